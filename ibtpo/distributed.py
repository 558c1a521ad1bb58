"""Process-group plumbing for multi-process training; every helper is a no-op with one process.

A multi-process run is started by ``accelerate launch`` (the ``train`` rule does this when
``train.num_processes > 1``, with a config file from ``pipelines/accelerate/``). ``accelerate``
starts one process per device through torchrun and describes the group in the environment;
:func:`init` joins it through accelerate's ``PartialState`` (NCCL on GPUs, gloo on CPU) and
reads the strategy from the launch config:

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
paper's (it says nothing about parallelism): implementing the reduction here rather than through
``DistributedDataParallel`` keeps the update exactly the one-process update on the same global
batch, lets a process hold no trajectory of a minibatch, and needs no ``no_sync`` bookkeeping.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field

import torch

STRATEGIES = ("single", "ddp", "fsdp")
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
        raise RuntimeError(f"accelerate launch config: mixed_precision {mp!r} is not supported (the trainer "
                           "computes in fp32); set mixed_precision: 'no'")
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
    """Where this process stands in the group. ``Dist()`` is the one-process case."""

    world: int = 1
    rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    strategy: str = "single"

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def collective_forward(self) -> bool:
        """Whether every forward/backward of the trained model is a collective (sharded parameters)."""
        return self.strategy == "fsdp"

    # -- collectives (no-ops at world size 1) -----------------------------------------------
    def gather(self, obj) -> list:
        """Every process's ``obj``, in rank order (picklable objects)."""
        if self.world == 1:
            return [obj]
        out = [None] * self.world
        torch.distributed.all_gather_object(out, obj)
        return out

    def broadcast(self, obj):
        """Rank 0's ``obj`` on every process."""
        if self.world == 1:
            return obj
        box = [obj]
        torch.distributed.broadcast_object_list(box, src=0)
        return box[0]

    def sum_values(self, values: dict[str, float]) -> dict[str, float]:
        """Per key, the sum over processes (keys a process lacks count as 0), added in rank order."""
        if self.world == 1:
            return values
        out: dict[str, float] = {}
        for d in self.gather(values):
            for k, v in d.items():
                out[k] = out.get(k, 0.0) + v
        return out

    def barrier(self) -> None:
        if self.world > 1:
            torch.distributed.barrier()

    def close(self) -> None:
        if self.world > 1 and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()

    # -- gradients --------------------------------------------------------------------------
    def sync_gradients(self, params) -> None:
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

    def clip_grad_norm_(self, params, max_norm: float) -> torch.Tensor:
        """Global gradient norm (clipped in place), as a plain tensor under every strategy."""
        norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
        return norm.full_tensor() if hasattr(norm, "full_tensor") else norm

    # -- models under fsdp ------------------------------------------------------------------
    def shard(self, model: torch.nn.Module) -> torch.nn.Module:
        """``fsdp``: shard ``model`` in place (one FSDP2 unit per decoder layer, then the root),
        with gradient reduction as a sum. Other strategies: ``model`` unchanged."""
        if self.strategy != "fsdp":
            return model
        from torch.distributed.fsdp import FSDPModule, fully_shard

        if _env_flag("FSDP_ACTIVATION_CHECKPOINTING") and hasattr(model, "gradient_checkpointing_enable"):
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
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
        return Dist(device=torch.device(device))
    strategy = launch_strategy()
    from accelerate import PartialState

    state = PartialState(cpu=torch.device(device).type == "cpu")
    if state.num_processes != world:
        raise RuntimeError(f"accelerate's process group has {state.num_processes} processes, WORLD_SIZE says {world}")
    dev = torch.device(device) if torch.device(device).type == "cpu" else state.device
    return Dist(world=world, rank=state.process_index, device=dev, strategy=strategy)
