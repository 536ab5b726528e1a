/* nuwa C API: NÜWA-style visual synthesis from an export directory, over ONNX Runtime.
 *
 * libnuwa_runtime.so runs an export directory (`nuwa export`; its manifest.json is the only
 * contract) with the same prepared graphs, ring-cache bindings, positions and guidance rows as
 * the Python runtime (nuwa.runtime.engine), so under greedy decoding (temperature 0) its tokens
 * and frames equal the Python runtime's; sampling draws the same numbers from the same seed
 * (spec/sampling_random.py: Philox4x32-10 keyed by the seed, one counter per row and position)
 * with the same rules, so a seeded request gives the Python runtime's tokens too (up to float
 * rounding of the logits: a token can differ only where a draw falls within ~1e-16 of a step of
 * the cumulative distribution).
 *
 * Conventions:
 *  - every function that can fail returns a nuwa_status; on failure nuwa_last_error() holds a
 *    one-line message (per thread) naming the problem, the Python runtime's message where it
 *    has one. No C++ exception crosses this boundary.
 *  - buffers are the caller's: nuwa_request_shape() says how large they must be.
 *  - thread safety: one nuwa_model may be used by several threads at once (each nuwa_generate
 *    call has its own cache and bindings; sessions are created once under a lock). A
 *    nuwa_generate call runs its decode loop on a worker thread of its own, joined before it
 *    returns; its frame callback runs on the calling thread (nuwa_frame_callback).
 *  - nuwa_open_options, nuwa_request, nuwa_model_info and nuwa_generate_stats carry their size
 *    (struct_size; the *_init functions set it): one smaller than this header's (a caller built
 *    against an older ABI) is refused with a message, never misread — except nuwa_open_options,
 *    which grows by fields appended at its end: the ABI-2 size (struct_size, threads) is still
 *    read, each later field past struct_size taking its default. Such an addition keeps the ABI
 *    version (and SONAME); a library older than the field ignores it (the field's comment says
 *    since when it is read).
 */
#ifndef NUWA_NUWA_H
#define NUWA_NUWA_H

#include <stddef.h>
#include <stdint.h>

#if defined(_WIN32)
#define NUWA_API __declspec(dllimport)
#elif defined(NUWA_BUILDING_RUNTIME)
#define NUWA_API __attribute__((visibility("default")))
#else
#define NUWA_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* The ABI version: the library's SONAME is libnuwa_runtime.so.<NUWA_ABI_VERSION>. 2: nuwa_request
 * grew seed (sampling); 1: the picture inputs and set_options (0: the first cut, t2i/t2v only). */
#define NUWA_ABI_VERSION 2

typedef enum nuwa_status {
  NUWA_OK = 0,
  NUWA_ERROR_INPUT = 1,     /* bad request input (the Python runtime's NuwaInputError) */
  NUWA_ERROR_MODEL = 2,     /* missing or malformed export directory / manifest */
  NUWA_ERROR_BACKEND = 3,   /* ONNX Runtime failed (cannot load a graph, a run failed) */
  NUWA_ERROR_CANCELLED = 4, /* the frame callback asked to stop */
  NUWA_ERROR_INTERNAL = 5   /* a bug: please report it with nuwa_last_error() */
} nuwa_status;

typedef struct nuwa_model nuwa_model; /* an opened export directory */

/* "0.1.0" and the like; static storage. */
NUWA_API const char* nuwa_version(void);
/* NUWA_ABI_VERSION of the library loaded (compare with the header's). */
NUWA_API int nuwa_abi_version(void);
/* The message of this thread's last failed call ("" if none); valid until this thread's next
 * call into the library. */
NUWA_API const char* nuwa_last_error(void);

/* The warnings of this thread's last nuwa_request_shape or nuwa_generate call, one a line ("" if
 * none): the Python runtime's warnings, word for word — a prompt word the model never saw (with
 * the nearest known ones), a mask rectangle clipped to the frame, a mask picture or an input
 * picture of another size than the model's. The request runs all the same. Valid until this thread's next call. */
NUWA_API const char* nuwa_last_warnings(void);

typedef struct nuwa_open_options {
  size_t struct_size;
  int threads; /* intra-op threads per ONNX Runtime session; 0: ONNX Runtime's default */
  /* --- read since 0.1.0's device choice (ABI 2 still; older libraries ignore them) --- */
  /* The execution provider, as the Python runtime's `device` (providers.py parse_device):
   * NULL, "" or "cpu" (the CPU); "cuda[:N]" (CUDA on GPU N, then the CPU); "tensorrt[:N]"
   * (TensorRT on GPU N with FP16/INT8 as the export's precision, then CUDA, then the CPU).
   * Either case. A provider this ONNX Runtime library lacks is refused by nuwa_open
   * (NUWA_ERROR_BACKEND, the Python runtime's message), as is an unknown device. On CUDA and
   * TensorRT the graphs run as exported (the portable 3DNA nodes run their function bodies);
   * frames, tokens and caches still pass through host memory. */
  const char* device;
  /* tensorrt only: the 3DNA plugin's registration library (libnuwa_trt_register.so), passed as
   * trt_extra_plugin_lib_paths; NULL: none (the portable export needs none). Must exist. */
  const char* trt_plugin_library;
  /* tensorrt only: the folder of TensorRT engines and timing caches (created if missing); NULL:
   * <cache root>/trt_engines/capi/<precision>, the cache root being $NUWA_CACHE_DIR, else
   * $XDG_CACHE_HOME/nuwa, else ~/.cache/nuwa. Unlike the Python runtime the default is not keyed
   * by TensorRT version, GPU and plugin build: give one folder per such build. */
  const char* trt_cache_dir;
} nuwa_open_options;

NUWA_API void nuwa_open_options_init(nuwa_open_options* options);

/* Open an export directory (manifest.json, graph files); options may be NULL (the CPU, ONNX
 * Runtime's default threads). The device is checked before the directory is read. */
NUWA_API nuwa_status nuwa_open(const char* export_dir, const nuwa_open_options* options,
                               nuwa_model** out);
NUWA_API void nuwa_close(nuwa_model* model); /* NULL is fine */

typedef struct nuwa_model_info {
  size_t struct_size;
  int image_size;      /* frame side in pixels (S) */
  int frames;          /* trained frames (the decoder's T) */
  int grid_h, grid_w;  /* tokens per frame side */
  int vocab_size;      /* visual codebook size */
  int max_prompt_bytes;/* longest prompt (UTF-8 bytes after normalising) */
} nuwa_model_info;

NUWA_API nuwa_status nuwa_model_get_info(const nuwa_model* model, nuwa_model_info* info);

/* A picture input (sketch, image, video): `frames` x `height` x `width`, row-major. One of another
 * size than the model's (nuwa_model_info.image_size) is resized as the Python runtime resizes it,
 * with its warning (nuwa_last_warnings): frames with the model's filter (input_rules.json, Pillow's
 * pixels), sketches nearest. */
typedef enum nuwa_pixel_format {
  NUWA_PIXELS_RGB = 0,      /* uint8 RGB: frames x height x width x 3 */
  NUWA_PIXELS_CLASS_IDS = 1 /* uint8 sketch class ids: frames x height x width */
} nuwa_pixel_format;

typedef struct nuwa_pixels {
  const uint8_t* data; /* NULL: not given */
  int format;          /* nuwa_pixel_format */
  int frames;          /* an image: 1 (of more frames the first is read) */
  int height, width;
} nuwa_pixels;

/* The region to generate (i2i, ti2i, tv2v): a rectangle, or a mask picture covering the frame. */
typedef struct nuwa_mask {
  int has_rect;         /* 1: the rectangle x0, y0, x1, y1 (the input's pixels; x1, y1 exclusive) */
  int x0, y0, x1, y1;
  const uint8_t* data;  /* else a picture height x width x channels (NULL: no mask) */
  int height, width;
  int channels;         /* 1: non-zero = generate; 3 or 4: the brightest of R, G, B above the
                           model's mask threshold (input_rules.json) = generate */
} nuwa_mask;

/* Bits of nuwa_request.set_options: the sampling options the caller gives. An option left out
 * takes the model's default for the task (the export's generation_config.json, as the Python
 * runtime's resolve_sampling reads it; built-in defaults without the file). */
#define NUWA_SET_TEMPERATURE 1u
#define NUWA_SET_GUIDANCE 2u
#define NUWA_SET_TOP_K 4u
#define NUWA_SET_TOP_P 8u
#define NUWA_SET_SEED 16u /* seed given; else fresh entropy per call (a seed is not an option of
                             generation_config.json) */

typedef struct nuwa_request {
  size_t struct_size;
  const char* task;            /* t2i s2i i2i ti2i t2v s2v v2v tv2v; either case */
  const char* const* prompts;  /* UTF-8 prompts, num_prompts of them (NULL: none) */
  size_t num_prompts;
  int num_frames;              /* 0: the task's default (1 for images, the trained frames) */
  int batch;                   /* samples per prompt (>= 1) */
  unsigned set_options;        /* NUWA_SET_* bits: which of the four below are given */
  double temperature;          /* 0: greedy (argmax) */
  double guidance_scale;       /* 1: off; else conditional + unconditional rows */
  int top_k;                   /* 0: off */
  double top_p;                /* 1: off */
  nuwa_pixels sketch;          /* s2i, s2v: palette RGB or class ids */
  nuwa_pixels image;           /* i2i, ti2i: RGB */
  nuwa_pixels video;           /* v2v (the first frames), tv2v: RGB */
  nuwa_mask mask;              /* i2i, ti2i, tv2v */
  uint64_t seed;               /* with NUWA_SET_SEED: the random stream (the Python runtime's seed) */
} nuwa_request;

/* t2i, batch 1, no inputs, every sampling option the model's default (set_options 0). */
NUWA_API void nuwa_request_init(nuwa_request* request);

typedef struct nuwa_output_shape {
  size_t struct_size;
  int rows;       /* B: prompts x batch, prompt-major */
  int frames;     /* T */
  int image_size; /* S */
  int grid_h, grid_w;
  size_t frame_bytes;  /* B*T*S*S*3: the frames buffer */
  size_t token_count;  /* B*T*grid_h*grid_w: the tokens buffer (int64) */
} nuwa_output_shape;

/* Check a request (every check of nuwa_generate, nothing run) and say its output's shape. */
NUWA_API nuwa_status nuwa_request_shape(const nuwa_model* model, const nuwa_request* request,
                                        nuwa_output_shape* shape);

/* Called when frame `frame` is decoded: `pixels` is (rows, S, S, 3) uint8, valid during the
 * call; frames in order. Return 0 to go on, non-zero to stop (nuwa_generate then returns
 * NUWA_ERROR_CANCELLED; the decode loop stops before its next step).
 * Threading: the callback runs on the thread that called nuwa_generate, never on another. Where
 * that thread may use more than one core (its CPU affinity), nuwa_generate runs the decode loop
 * on a worker thread of its own, started and joined inside the call, while the calling thread
 * VQ-decodes each finished frame and calls the callback: the VQ decoder's time (and the
 * callback's) overlaps the decoding of the next frame, and the loop does not wait for the
 * callback. Restricted to one core, both run in turn on the calling thread. An error on either
 * thread ends the call with that status and this thread's nuwa_last_error(). */
typedef int (*nuwa_frame_callback)(void* user_data, int frame, const uint8_t* pixels, int rows,
                                   int image_size);

/* Generate: frames (B, T, S, S, 3) uint8 into `frames` (frame_bytes of them) and the token grid
 * (B, T, grid_h, grid_w) int64 into `tokens` (may be NULL). `callback` may be NULL. */
NUWA_API nuwa_status nuwa_generate(nuwa_model* model, const nuwa_request* request,
                                   uint8_t* frames, size_t frames_size, int64_t* tokens,
                                   size_t tokens_count, nuwa_frame_callback callback,
                                   void* user_data);

/* Where the time of this thread's last nuwa_generate call went (successful or not): a steady
 * clock around the whole call and around each ONNX Runtime Run inside it, on both of the call's
 * threads (nuwa_frame_callback): the runs are counted once each, and their seconds summed over
 * both threads, so ort_seconds may exceed total_seconds where the VQ decoder's runs overlapped
 * the decoder steps (for benchmarks: total_seconds - step_seconds is what the call spent beyond
 * its decoder steps). */
typedef struct nuwa_generate_stats {
  size_t struct_size;
  double total_seconds;      /* the whole nuwa_generate call */
  double ort_seconds;        /* inside ONNX Runtime, both threads: every run (encoders, steps, prefill, VQ) */
  double step_seconds;       /* of which the decoder steps */
  long long ort_runs;        /* graph runs */
  long long step_runs;       /* of which decoder steps (one per decoded position) */
} nuwa_generate_stats;

NUWA_API nuwa_status nuwa_last_generate_stats(nuwa_generate_stats* stats);

/* The text token ids of `prompt` (UTF-8) as the model reads it: max_prompt_bytes + 1 of them
 * into `ids` (count >= that), the Python tokenizer's (spec/tokenizer.py): Unicode NFKC, lower
 * case, whitespace collapsed, UTF-8 bytes, <eos> 257, <pad> 256. An empty, too long or invalid
 * prompt is NUWA_ERROR_INPUT with the Python runtime's message. */
NUWA_API nuwa_status nuwa_prompt_tokens(const nuwa_model* model, const char* prompt,
                                        int64_t* ids, size_t count);

/* PNG files, read as the Python runtime reads picture files (nuwa.runtime.media, Pillow's modes
 * and conversions; libpng here). `what` ("image", "video", "sketch"; NULL: "image") names the
 * file in messages: a missing or unreadable file is NUWA_ERROR_INPUT with Python's message. */
NUWA_API nuwa_status nuwa_png_size(const char* path, const char* what, int* height, int* width);
/* height x width x 3 RGB into `rgb` (size >= that): transparency composited on black. */
NUWA_API nuwa_status nuwa_read_png_rgb(const char* path, const char* what, uint8_t* rgb,
                                       size_t size);
/* A mask picture: height x width of 0 / 1 into `mask` (1 = generate), as media.read_mask reads
 * it: grey (Pillow's "L": ITU-R 601-2 luma) above the model's mask threshold, and where the
 * picture has an alpha channel only where it is opaque (alpha > 127). Pass it on as a 1-channel
 * nuwa_mask. (A 3- or 4-channel nuwa_mask is read as the Python runtime reads an array: the
 * brightest of R, G, B.) */
NUWA_API nuwa_status nuwa_read_png_mask(const nuwa_model* model, const char* path,
                                        uint8_t* mask, size_t size);

/* Frames out: one RGB picture as a PNG (libpng); `count` frames (count x height x width x 3) as
 * a looping GIF (giflib) showing each max(1, round(1000 / fps)) ms, as the Python runtime's
 * write_video. GIF holds 256 colours a frame: a frame with more is quantised (giflib's
 * GifQuantizeBuffer, median cut, refined by two k-means rounds), one with fewer is exact. */
NUWA_API nuwa_status nuwa_write_png(const char* path, const uint8_t* rgb, int height, int width);
NUWA_API nuwa_status nuwa_write_gif(const char* path, const uint8_t* frames, int count,
                                    int height, int width, double fps);

#ifdef __cplusplus
}
#endif

#endif /* NUWA_NUWA_H */
