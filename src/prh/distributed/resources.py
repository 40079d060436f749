"""Ray plumbing shared by the distributed extraction and alignment: importing and connecting to Ray, task resource
estimates, which failures are retried, and turning Ray's errors back into prh errors.

Nothing here imports Ray at module import time; :func:`require_ray` does, with a clear error when it is missing.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prh._validation import check_float, check_int
from prh.errors import InputError, OfflineError, PrhError

GIB = 1024**3
#: Bytes per parameter of the weights for each ``--dtype`` ("auto" assumes a half-precision checkpoint).
BYTES_PER_PARAM = {"float32": 4, "float16": 2, "bfloat16": 2, "auto": 2}
#: Host memory a worker needs besides the weights (Python, torch, a batch of activations), bytes.
BASE_MEMORY = 1 * GIB
#: Weights are counted this many times (loading copies, activations, pooled features).
MEMORY_OVERHEAD = 1.5
#: Under ``--device auto``, models with at least this many parameters ask for a GPU when the cluster has one;
#: smaller ones run on a CPU slot and leave the GPUs to the big models.
MIN_GPU_PARAMS = 10_000_000
#: Memory of one GPU assumed when spreading a model over several GPUs (``--device-map auto``), bytes.
GPU_MEMORY = 80 * GIB
#: Retries of a task after its worker process died (node lost, OOM-killed, segfault) or a transient error.
DEFAULT_MAX_RETRIES = 3
#: Exceptions inside a task that count as transient (worth a retry on a fresh worker): network and hub hiccups.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (OfflineError, ConnectionError, TimeoutError)


class TransientTaskError(PrhError, RuntimeError):
    """A task failed for a reason that may go away on a retry (network, hub); Ray retries these."""


@dataclass(frozen=True)
class RayOptions:
    """Where and how the Ray backend runs its tasks (nothing here changes the numbers); validated when built.

    Parameters
    ----------
    address : str or None, default None
        Ray cluster address (``"auto"``, ``"HOST:6379"``, ``"ray://HOST:10001"``); None: the Ray already running
        in this process, else ``RAY_ADDRESS``, else a new local Ray (see :func:`ray_session`).
    max_retries : int, default :data:`DEFAULT_MAX_RETRIES` (3)
        Retries of a task (>= 0) after its worker died or it met a transient (network/hub) error.
    init_kwargs : dict, default {}
        More ``ray.init`` arguments (e.g. ``runtime_env``), used only when this call starts Ray.
    block_size : int or None, default None
        Alignment: models per tile side (>= 1); a task loads at most ``2 * block_size`` models. None: about
        ``sqrt(2 * cluster CPUs)`` blocks per side.
    cpus_per_task : float, default 1.0
        Extraction: CPU slots per model task (> 0).
    """

    address: str | None = None
    max_retries: int = DEFAULT_MAX_RETRIES
    init_kwargs: dict = field(default_factory=dict)
    block_size: int | None = None
    cpus_per_task: float = 1.0

    def __post_init__(self) -> None:
        if self.address is not None and not isinstance(self.address, str):
            raise InputError(
                f"address={self.address!r} must be a Ray address string (auto, HOST:6379) or None."
            )
        if not isinstance(self.init_kwargs, dict):
            raise InputError(f"init_kwargs={self.init_kwargs!r} must be a dict of ray.init arguments.")
        max_retries = check_int(self.max_retries, "max_retries", minimum=0, hint="retries per task")
        block_size = (
            None
            if self.block_size is None
            else check_int(self.block_size, "block_size", minimum=1, hint="models per tile side")
        )
        cpus = check_float(
            self.cpus_per_task, "cpus_per_task", 0.0, None, inclusive=(False, True), hint="CPU slots per task"
        )
        object.__setattr__(self, "max_retries", max_retries)
        object.__setattr__(self, "block_size", block_size)
        object.__setattr__(self, "cpus_per_task", cpus)
        object.__setattr__(self, "init_kwargs", dict(self.init_kwargs))


def require_ray():
    """Import and return the ``ray`` module, or raise :class:`ModelLoadError` saying how to install it."""
    from prh._optional import optional_import

    return optional_import(
        "ray",
        "ray",
        purpose="the Ray backend needs `ray`",
        package="'ray>=2.9'",
        instead="use --backend local",
    )


@contextmanager
def ray_session(address: str | None = None, **init_kwargs: Any) -> Iterator[Any]:
    """Connect to Ray for the duration of a ``with`` block and yield the ``ray`` module.

    Parameters
    ----------
    address : str or None
        ``None``: reuse the Ray already initialised in this process, else connect to ``RAY_ADDRESS`` when it is
        set, else start a local Ray on this machine. ``"auto"``: the cluster this machine belongs to
        (``ray start --head`` ran here). ``"HOST:PORT"`` / ``"ray://HOST:10001"``: that cluster.
    **init_kwargs
        More ``ray.init`` arguments (``runtime_env``, ``num_cpus``, ``log_to_driver``...).

    Ray is shut down on exit only if this call started or connected it.
    """
    ray = require_ray()
    if ray.is_initialized():
        yield ray
        return
    init_kwargs.setdefault("include_dashboard", False)
    init_kwargs.setdefault("configure_logging", True)
    init_kwargs.setdefault("logging_level", "warning")
    try:
        ray.init(address=address, **init_kwargs)
    except (ConnectionError, RuntimeError, ValueError) as err:
        raise PrhError(
            f"could not connect to Ray at --address {address!r}: {err}. Start a cluster with `ray start --head` "
            f"(see docs/scaling.md), pass its address (HOST:6379 or auto), or leave --address out to start a "
            f"local Ray."
        ) from err
    try:
        yield ray
    finally:
        ray.shutdown()


@dataclass(frozen=True)
class NodeLimits:
    """What the largest alive node of the cluster offers (to keep requests feasible)."""

    cpus: float
    gpus: float
    memory: float

    @classmethod
    def from_ray(cls, ray) -> NodeLimits:
        nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive", n.get("alive", False))]
        if not nodes:  # pragma: no cover - a connected driver always sees its node
            return cls(1.0, 0.0, 0.0)
        return cls(
            cpus=max(float(r.get("CPU", 0)) for r in nodes),
            gpus=max(float(r.get("GPU", 0)) for r in nodes),
            memory=max(float(r.get("memory", 0)) for r in nodes),
        )


@dataclass(frozen=True)
class TaskResources:
    """Resources one Ray task asks for, and the device its code should use.

    Attributes
    ----------
    num_cpus, num_gpus : float
        Ray logical resources (the scheduler places the task on a node that has them free).
    memory : int
        Bytes of host memory reserved (Ray's logical ``memory`` resource).
    device : str
        ``"cuda"`` when the task holds GPUs (Ray sets ``CUDA_VISIBLE_DEVICES`` to them), else ``"cpu"``.
    weight_bytes : int or None
        The size estimate the request came from (None when unknown).
    notes : tuple of str
        Adjustments made to fit the cluster (reported on the driver).
    """

    num_cpus: float
    num_gpus: float
    memory: int
    device: str
    weight_bytes: int | None = None
    notes: tuple[str, ...] = ()

    def options(self) -> dict:
        """Keyword arguments for ``remote_function.options(...)``."""
        return {"num_cpus": self.num_cpus, "num_gpus": self.num_gpus, "memory": int(self.memory)}


def weight_bytes(spec, dtype: str = "float32") -> int | None:
    """Estimated bytes of the weights of ``spec`` in ``dtype``.

    From ``spec.params`` (the registry's parameter count) when known, else from the size of the weight files of a
    local model folder/file (``*.safetensors``, ``*.bin``, ``*.pt``, ``*.onnx``, ``*.gguf``), else None.
    """
    per_param = BYTES_PER_PARAM.get(str(dtype), 4)
    if spec.params:
        return int(spec.params) * per_param
    source = Path(str(spec.source)).expanduser()
    suffixes = (".safetensors", ".bin", ".pt", ".pth", ".onnx", ".gguf")
    try:
        if source.is_file():
            return source.stat().st_size
        if source.is_dir():
            total = sum(p.stat().st_size for p in source.rglob("*") if p.suffix in suffixes and p.is_file())
            return total or None
    except OSError:
        return None
    return None


def estimate_extract_resources(
    spec,
    device: str = "auto",
    dtype: str = "float32",
    device_map: str | None = None,
    limits: NodeLimits | None = None,
    cpus_per_task: float = 1.0,
    min_gpu_params: int = MIN_GPU_PARAMS,
    gpu_memory: float = GPU_MEMORY,
) -> TaskResources:
    """Resources for extracting one model, from a size estimate.

    Parameters
    ----------
    spec : ModelSpec
        The model (``params`` or its local weight files give the size).
    device : str
        ``"auto"``: a GPU when the cluster has GPUs and the model has at least ``min_gpu_params`` parameters (or
        its size is unknown), else CPU. ``"cuda"`` / ``"cuda:N"``: always a GPU (Ray picks which). ``"cpu"``: no GPU.
    dtype : str
        Weight dtype (bytes per parameter from :data:`BYTES_PER_PARAM`).
    device_map : str or None
        ``"auto"`` spreads a big model over several GPUs of one node: ``num_gpus`` is then
        ``ceil(1.2 * weights / gpu_memory)`` (at most the GPUs of the largest node).
    limits : NodeLimits or None
        The largest node; requests above it are capped (with a note) so that no task waits forever.
    cpus_per_task : float
        CPU slots per task.

    Returns
    -------
    TaskResources
        ``memory = BASE_MEMORY + MEMORY_OVERHEAD * weight bytes`` (``BASE_MEMORY + 2 GiB`` when the size is
        unknown); ``device`` is what the worker passes to the adapter.

    Raises
    ------
    InputError
        ``device="cuda"`` on a cluster without any GPU.
    """
    notes: list[str] = []
    size = weight_bytes(spec, dtype)
    per_param = BYTES_PER_PARAM.get(str(dtype), 4)
    params = spec.params or (size // per_param if size else None)
    cluster_gpus = limits.gpus if limits is not None else 0.0
    wants = str(device)
    if wants.startswith("cuda"):
        if limits is not None and cluster_gpus <= 0:
            raise InputError(
                f"--device {device} asks for a GPU but no node of the Ray cluster has one; use --device auto "
                f"(GPU when available) or --device cpu."
            )
        use_gpu = True
    elif wants == "auto":
        use_gpu = cluster_gpus > 0 and (params is None or params >= min_gpu_params)
    else:
        use_gpu = False
    num_gpus = 0.0
    if use_gpu:
        num_gpus = 1.0
        if device_map and size:
            num_gpus = float(max(1, math.ceil(1.2 * size / gpu_memory)))
        if cluster_gpus and num_gpus > cluster_gpus:
            notes.append(f"needs ~{num_gpus:.0f} GPUs, capped at {cluster_gpus:.0f} (the largest node)")
            num_gpus = cluster_gpus
    memory = BASE_MEMORY + (MEMORY_OVERHEAD * size if size else 2 * GIB)
    if limits is not None and limits.memory and memory > limits.memory:
        notes.append(
            f"needs ~{memory / GIB:.1f} GiB of memory, capped at {limits.memory / GIB:.1f} GiB (the largest node)"
        )
        memory = limits.memory
    cpus = float(cpus_per_task)
    if limits is not None and limits.cpus and cpus > limits.cpus:
        cpus = limits.cpus
    return TaskResources(
        num_cpus=cpus,
        num_gpus=num_gpus,
        memory=int(memory),
        device="cuda" if use_gpu else "cpu",
        weight_bytes=size,
        notes=tuple(notes),
    )


def task_error(err: BaseException) -> BaseException:
    """The exception a user should see for a failed Ray task: the original prh error when there is one."""
    cause = getattr(err, "cause", None)
    if isinstance(cause, BaseException):
        return cause
    return err


def describe_task_error(err: BaseException, retries: int) -> str:
    """One line for a failed task: the cause's message, and the retries that were spent on it."""
    ray = require_ray()
    inner = task_error(err)
    if isinstance(inner, TransientTaskError):
        return f"{inner} (gave up after {retries} retries)"
    if isinstance(inner, PrhError):
        return str(inner)
    if isinstance(err, ray.exceptions.WorkerCrashedError | ray.exceptions.NodeDiedError):
        return f"the worker died {retries + 1} times (out of memory? killed?); last: {type(err).__name__}"
    if isinstance(err, ray.exceptions.OutOfMemoryError):
        return f"Ray's memory monitor killed the task {retries + 1} times (out of host memory)"
    text = str(inner).strip().splitlines()
    return f"{type(inner).__name__}: {text[-1] if text else ''}"


def wait_all(ray, refs: list, on_done: Callable[[Any, Any, BaseException | None], bool | None]) -> None:
    """Wait for ``refs`` as they finish (any order), calling ``on_done(ref, value, error)`` for each.

    ``on_done`` returning True stops the wait and cancels the refs that are still pending. On Ctrl-C the pending
    tasks are cancelled too (finished results are already in the store) and KeyboardInterrupt propagates.
    """
    pending = list(refs)
    try:
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for ref in done:
                try:
                    value, error = ray.get(ref), None
                except Exception as err:  # noqa: BLE001 - reported through on_done
                    value, error = None, err
                if on_done(ref, value, error):
                    for other in pending:
                        ray.cancel(other)
                    return
    except KeyboardInterrupt:
        for other in pending:
            ray.cancel(other, force=True)
        raise
