"""ZeroGPU: a Space on ZeroGPU hardware attaches a GPU only while a function decorated with @spaces.GPU(duration=...)
runs, and the `spaces` package exists only there. gpu(seconds) is that decorator where `spaces` is installed, and
returns the function unchanged everywhere else. The app's generation entry points wear it: a chat or Compare answer
(medvlm.host) and each batch of a dataset comparison (medvlm.compare.compare_batch).
"""
try:
    import spaces
except ImportError:  # not a ZeroGPU Space
    spaces = None


def gpu(seconds: int):
    """@spaces.GPU(duration=seconds) with `spaces` installed; else the identity."""
    if spaces is None:
        return lambda fn: fn
    return spaces.GPU(duration=seconds)
