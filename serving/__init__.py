"""``nuwa serve``: the runtime behind Triton Inference Server (DESIGN §12).

:mod:`~nuwa.serving.contract` names the models and tensors; a request's tensors become one
``Pipeline`` call (:mod:`~nuwa.serving.request_decoding`) admitted under the server's limits
(:mod:`~nuwa.serving.admission`) and run with a deadline (:mod:`~nuwa.serving.request_runner`);
:mod:`~nuwa.serving.triton_models` binds the models to PyTriton and :mod:`~nuwa.serving.server`
starts Triton in this process. PyTriton and tritonclient come with the ``[serve]`` extra; nothing
here imports them until a server starts.
"""
