"""Multi-process training: what ``accelerate`` does for the trainer, and the little it cannot.

A multi-process run is started by ``accelerate launch`` (the ``train`` rule does this when
``train.num_processes > 1``, with a config file from ``pipelines/accelerate/``). ``accelerate``
starts one process per device through torchrun and describes the group in the environment;
:func:`init` checks the launch config (:func:`launch_strategy`) and creates the run's
``accelerate.Accelerator``, which joins the group (NCCL on GPUs, gloo on CPU) and says where this
process stands (``process_index``, ``num_processes``, ``is_main_process``, ``device``). The trainer
exchanges picklable objects with ``accelerate.utils.gather_object`` / ``broadcast_object_list`` and
waits with ``Accelerator.wait_for_everyone``; with one process all of these are no-ops. The
strategy comes from the launch config:

- ``ddp`` (``distributed_type: MULTI_GPU``): every process holds the whole model; after the
  backward passes of a minibatch the gradients are **summed** over processes (one all-reduce
  per bucket), so every process takes the same optimizer step.
- ``fsdp`` (``distributed_type: FSDP``, ``fsdp_version: 2``): parameters, gradients and
  optimizer state are sharded with PyTorch's FSDP2 ``fully_shard`` (one unit per decoder layer
  plus the root); gradients are reduce-scattered as sums. Every forward of a sharded model is a
  collective, so all processes run the same number of forward/backward passes (the trainer pads
  with empty chunks), and generation runs on a full-weight copy refreshed after every optimizer
  step (:meth:`Dist.copy_full_params`), because ragged decoding cannot be a collective.

Why sums: each process's loss is already its share of the global loss (the loss normalisers are
the global token / sequence counts, METHOD.md's aggregation modes over the whole batch), so the
global gradient is the sum of the per-process gradients, not their mean. Our choice, not the
paper's (it says nothing about parallelism).

What :class:`Dist` keeps by hand, and why not ``Accelerator.prepare``:

- the gradient sum (``ddp``): ``prepare`` wraps the model in ``DistributedDataParallel``, which
  averages the gradients and needs every process to run the same backward passes; the sum here
  keeps the update exactly the one-process update on the same global batch, lets a process hold
  no trajectory of a minibatch, and needs no ``no_sync`` bookkeeping;
- the sharding (``fsdp``): accelerate's FSDP2 ``prepare`` chooses its own units (embeddings and
  head apart), reduces gradients as means, must take the optimizer along, and never runs on CPU
  (there accelerate's state is ``MULTI_CPU`` whatever the launch config says), so the CPU test
  could not exercise it;
- the full-weight copy for generation, and the full (gathered) model and optimizer state dicts of
  a checkpoint (accelerate's ``get_state_dict`` gathers only where its state says FSDP, not on
  CPU, and it returns no full optimizer state).
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

import torch
from accelerate import Accelerator
from accelerate.state import is_initialized as accelerate_initialized
from accelerate.utils import gather_object

_BUCKET = 1 << 25  # elements per gradient all-reduce bucket (128 MiB of fp32)


def free_port() -> int:
    """A free TCP port on this host for the process group's rendezvous (one per training job)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env_flag(name: str, default: str = "false") -> bool:
    return os.environ.get(name, default).strip().lower() in ("1", "true", "yes")


def launch_strategy() -> str:
    """``fsdp`` or ``ddp`` from the environment ``accelerate launch`` sets; errors name what is unsupported."""
    if _env_flag("ACCELERATE_USE_DEEPSPEED"):
        raise RuntimeError("accelerate launch config: DeepSpeed is not supported by the trainer; "
                           "use pipelines/accelerate/fsdp.yaml (FSDP2) or ddp.yaml")
    mp = os.environ.get("ACCELERATE_MIXED_PRECISION", "no")
    if mp != "no":
        raise RuntimeError(f"accelerate launch config: mixed_precision {mp!r} is not supported (the preset's "
                           "train.precision sets it: bf16-mixed); set mixed_precision: 'no'")
    if not _env_flag("ACCELERATE_USE_FSDP"):
        return "ddp"
    if os.environ.get("FSDP_VERSION", "1") != "2":
        raise RuntimeError(f"accelerate launch config: fsdp_version {os.environ.get('FSDP_VERSION', '1')} is not "
                           "supported; set fsdp_config.fsdp_version: 2 (FSDP2)")
    if _env_flag("FSDP_OFFLOAD_PARAMS"):
        raise RuntimeError("accelerate launch config: fsdp_offload_params true is not supported; set it to false")
    if _env_flag("FSDP_CPU_RAM_EFFICIENT_LOADING"):
        # transformers would then load real weights on rank 0 only (empty ones elsewhere)
        raise RuntimeError("accelerate launch config: fsdp_cpu_ram_efficient_loading true is not supported (every "
                           "process loads the base model itself); set it to false")
    return "fsdp"


@dataclass
class Dist:
    """This process in the run: its ``accelerator`` (the group, this process's place in it), the
    ``device`` it trains on, and the ``strategy`` that splits the model over the group
    (``single``, ``ddp`` or ``fsdp``). Build it with :func:`init` (or :func:`single`)."""

    accelerator: Accelerator
    device: torch.device
    strategy: str = "single"

    @property
    def collective_forward(self) -> bool:
        """Whether every forward/backward of the trained model is a collective (sharded parameters)."""
        return self.strategy == "fsdp"

    # -- gradients --------------------------------------------------------------------------
    def clip_global_grad_norm_(self, params, max_norm: float) -> torch.Tensor:
        """Make the gradients the global (whole-batch) gradient (:meth:`sum_gradients`), clip it in
        place to ``max_norm`` and return its norm, as a plain tensor under every strategy."""
        params = list(params)
        self.sum_gradients(params)
        norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
        return norm.full_tensor() if hasattr(norm, "full_tensor") else norm

    def sum_gradients(self, params) -> None:
        """``ddp``: replace each gradient by its sum over processes. A parameter without a gradient
        on every process keeps none (as in a one-process run); one with a gradient somewhere gets
        zeros where it has none. ``fsdp`` reduces in its backward hooks and ``single`` has nothing
        to reduce."""
        if self.strategy != "ddp":
            return
        params = [p for p in params if p.requires_grad]
        has = torch.tensor([p.grad is not None for p in params], dtype=torch.float32, device=self.device)
        torch.distributed.all_reduce(has)
        grads = []
        for p, h in zip(params, has.tolist()):
            if h:
                if p.grad is None:
                    p.grad = torch.zeros_like(p)
                grads.append(p.grad)
        buckets: list[list[torch.Tensor]] = [[]]
        size = 0
        for g in grads:
            if buckets[-1] and size + g.numel() > _BUCKET:
                buckets.append([])
                size = 0
            buckets[-1].append(g)
            size += g.numel()
        for bucket in buckets:
            if not bucket:
                continue
            flat = torch.cat([g.reshape(-1) for g in bucket])
            torch.distributed.all_reduce(flat)
            offset = 0
            for g in bucket:
                g.copy_(flat[offset:offset + g.numel()].view_as(g))
                offset += g.numel()

    # -- models under fsdp ------------------------------------------------------------------
    def shard(self, model: torch.nn.Module) -> torch.nn.Module:
        """``fsdp``: shard ``model`` in place (one FSDP2 unit per decoder layer, then the root),
        with gradient reduction as a sum. Other strategies: ``model`` unchanged."""
        if self.strategy != "fsdp":
            return model
        from torch.distributed.fsdp import FSDPModule, fully_shard

        if _env_flag("FSDP_ACTIVATION_CHECKPOINTING") and hasattr(model, "gradient_checkpointing_enable"):
            from .precision import enable_gradient_checkpointing

            enable_gradient_checkpointing(model)  # as train.gradient_checkpointing: true
        reshard = _env_flag("FSDP_RESHARD_AFTER_FORWARD", "true")
        layers = getattr(getattr(model, "model", None), "layers", None)
        if layers is None:
            raise RuntimeError(f"fsdp: {type(model).__name__} has no .model.layers to shard per decoder layer")
        for layer in layers:
            fully_shard(layer, reshard_after_forward=reshard)
        fully_shard(model, reshard_after_forward=reshard)
        for unit in model.modules():
            if isinstance(unit, FSDPModule):  # sum, not mean; plain SUM collectives (gloo has no PREMUL_SUM)
                unit.set_gradient_divide_factor(1.0)
                unit.set_force_sum_reduction_for_comms(True)
        return model

    def copy_full_params(self, sharded: torch.nn.Module, full: torch.nn.Module) -> None:
        """``fsdp``: write the sharded model's parameters into the full-weight copy ``full``
        (one all-gather per parameter; every process calls it)."""
        if self.strategy != "fsdp":
            return
        dst = dict(full.named_parameters())
        with torch.no_grad():
            for name, p in sharded.named_parameters():
                dst[name].copy_(p.full_tensor() if hasattr(p, "full_tensor") else p)

    def model_state(self, model: torch.nn.Module) -> dict:
        """A full (unsharded) state dict; under ``fsdp`` gathered to CPU (every process calls it)."""
        if self.strategy != "fsdp":
            return model.state_dict()
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))

    def load_model_state(self, model: torch.nn.Module, state: dict) -> None:
        if self.strategy != "fsdp":
            model.load_state_dict(state)
            return
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

        set_model_state_dict(model, state, options=StateDictOptions(full_state_dict=True))

    def optimizer_state(self, model: torch.nn.Module, opt: torch.optim.Optimizer) -> dict:
        """The optimizer state to checkpoint; under ``fsdp`` the full state keyed by parameter name."""
        if self.strategy != "fsdp":
            return opt.state_dict()
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

        return get_optimizer_state_dict(model, opt, options=StateDictOptions(full_state_dict=True, cpu_offload=True))

    def load_optimizer_state(self, model: torch.nn.Module, opt: torch.optim.Optimizer, state: dict) -> None:
        if self.strategy != "fsdp":
            opt.load_state_dict(state)
            return
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

        set_optimizer_state_dict(model, opt, state, options=StateDictOptions(full_state_dict=True))


def sum_values(values: dict[str, float]) -> dict[str, float]:
    """Per key, the sum over processes (keys a process lacks count as 0), added in rank order;
    with one process, ``values`` itself."""
    parts = gather_object([values])
    if len(parts) == 1:
        return values
    out: dict[str, float] = {}
    for d in parts:
        for k, v in d.items():
            out[k] = out.get(k, 0.0) + v
    return out


def max_value(value: float) -> float:
    """The largest of the processes' ``value`` (with one process, ``value`` itself)."""
    return max(gather_object([value]))


def single(device: str = "cpu") -> Dist:
    """The one-process :class:`Dist` training on ``device``. With one process the accelerator only
    answers "rank 0 of 1" and makes the collectives no-ops, so its own device does not matter: a
    CPU one (which probes no GPU), or, when this process already has an accelerator (its state is
    process-wide, and one made for a GPU refuses to become a CPU one), that one's."""
    return Dist(Accelerator(cpu=not accelerate_initialized()), torch.device(device))


def init(device: str = "cpu", expected: int = 1) -> Dist:
    """Join the process group this process was launched into (``WORLD_SIZE`` > 1), or return the
    one-process :class:`Dist`. ``expected`` is ``train.num_processes``: a mismatch is an error,
    because the rollout seeds depend on the rank (the results on the number of processes)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world != expected:
        how = (f"launch it with `accelerate launch --num_processes {expected} --config_file "
               f"pipelines/accelerate/<ddp|fsdp>.yaml -m ibtpo ... train ...` (the train rule does this)"
               if expected > 1 else "run it without accelerate/torchrun, or set train.num_processes")
        raise RuntimeError(f"train.num_processes is {expected} but this job runs in {world} process(es); {how}")
    if world == 1:
        return single(device)
    strategy = launch_strategy()  # before the Accelerator, which would fail less clearly on what it refuses
    acc = Accelerator(cpu=torch.device(device).type == "cpu")
    if acc.num_processes != world:
        raise RuntimeError(f"accelerate's process group has {acc.num_processes} processes, WORLD_SIZE says {world}")
    return Dist(acc, acc.device, strategy)
