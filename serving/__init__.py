"""``nuwa serve``: the runtime behind Triton Inference Server (DESIGN §12).

:mod:`~nuwa.serving.contract` names the models and tensors; a request's tensors become one
``Pipeline`` call (:mod:`~nuwa.serving.request_decoding`) admitted under the server's limits
(:mod:`~nuwa.serving.admission`, :mod:`~nuwa.serving.limits`) and run with a deadline
(:mod:`~nuwa.serving.request_runner`); errors are :mod:`~nuwa.serving.errors`'s one-line kinds.
In this process (:mod:`~nuwa.serving.server`), ``nuwa_stream`` is bound through PyTriton and
``nuwa`` is the forwarding Python-backend model (:mod:`~nuwa.serving.triton_models`,
:mod:`~nuwa.serving.repository_forward_model`); ``--write-repository``
(:mod:`~nuwa.serving.model_repository`) writes both as a model repository for a standalone
``tritonserver``, the engine in :mod:`~nuwa.serving.repository_engine_model`.
:mod:`~nuwa.serving.client` is a small tritonclient helper. PyTriton and tritonclient come with
the ``[serve]`` extra; nothing here imports them until a server starts or a client connects.
"""
