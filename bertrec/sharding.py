"""What FSDP changes for code that runs outside the sharded module's own forward: evaluation and saving.

Under FSDP (accelerate's ``distributed_type: FSDP``, version 2) each process holds a shard of every parameter,
and a module's full parameters exist only while its forward runs. Training calls the loss module's forward, so
it needs nothing here; validation calls the backbone and the output layer directly, so it runs inside
``gathered_parameters``. Saving and loading go through ``torch.distributed.checkpoint``'s state-dict API, which
gathers full tensors from the shards and scatters them back (a sharded module's own ``state_dict`` holds
shards). For a module that is not sharded (one process, or DDP) every function here is the plain operation.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from safetensors.torch import save_file, save_model


def _sharded_modules(module: torch.nn.Module) -> list[torch.nn.Module]:
    try:
        from torch.distributed.fsdp import FSDPModule
    except ImportError:  # a torch built without distributed support
        return []
    return [m for m in module.modules() if isinstance(m, FSDPModule)]


def is_sharded(module: torch.nn.Module) -> bool:
    return bool(_sharded_modules(module))


@contextlib.contextmanager
def gathered_parameters(module: torch.nn.Module) -> Iterator[None]:
    """Full parameters in every process for the duration (a collective: every process must enter it).

    Memory: the whole model once per process while inside, as in unsharded training; what FSDP saves is the
    optimizer state and gradients, which this does not touch.
    """
    sharded = _sharded_modules(module)
    for part in sharded:
        part.unshard()
    try:
        yield
    finally:
        for part in sharded:
            part.reshard()


def load_full_state_dict(
    module: torch.nn.Module, state_dict: dict[str, torch.Tensor]
) -> torch.nn.modules.module._IncompatibleKeys:
    """``module.load_state_dict(state_dict, strict=False)`` that also works when ``module`` is sharded: every
    process passes the same full tensors and keeps its own shard of them."""
    if not is_sharded(module):
        return module.load_state_dict(state_dict, strict=False)
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

    options = StateDictOptions(full_state_dict=True, strict=False)
    return set_model_state_dict(module, state_dict, options=options)


def full_state_dict(module: torch.nn.Module) -> dict[str, torch.Tensor] | None:
    """Every parameter in full, on the main process only (a collective: every process must call it); None
    when ``module`` is not sharded, whose own ``state_dict`` is then the full one."""
    if not is_sharded(module):
        return None
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(module, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def save_weights(module: torch.nn.Module, path: str, state_dict: dict[str, torch.Tensor] | None = None) -> None:
    """``safetensors.torch.save_model``, or, for a sharded module, the same file from ``state_dict`` (what
    ``full_state_dict`` gathered): tied tensors (an embedding shared with the output layer) are stored once,
    under their first name, as ``save_model`` stores them."""
    if state_dict is None:
        save_model(module, path)
        return
    first: dict[int, str] = {}
    tied = {
        name for name, p in module.named_parameters(remove_duplicate=False) if first.setdefault(id(p), name) != name
    }
    save_file({name: tensor.contiguous() for name, tensor in state_dict.items() if name not in tied}, path)
