"""Sensitivity-n and the other metrics over a data set on Ray: :func:`gradattr.evaluate` run by several workers,
one table.

What is computed is exactly :func:`gradattr.evaluate`'s, by the same runner: both build the same
:class:`~gradattr.evaluation.EvaluationSettings` from their keyword arguments (checked once, there) and
measure each batch with :func:`~gradattr.evaluation.measure_batch`. How the work is shared:

* **Shards of whole batches.** The samples are cut into batches of ``batch_size`` as the single-process run
  cuts them, and the batches into contiguous shards (sample ranges that start on a batch boundary). Every
  batch therefore holds the same samples at the same positions as in the single-process run, which matters
  for methods whose noise depends on the position in the batch (SmoothGrad, Shapley sampling).
* **The model shipped once per worker.** Each worker is a Ray actor that fixes its torch threads when it
  starts (``threads_per_worker``, so N workers do not oversubscribe the cores). Per call the model is
  serialised once (``ray.put``) and each worker deserialises it once, with its memory budget, then measures
  one shard after another (shards go to whichever worker is free), with the settings cut to the shard's
  samples (:meth:`~gradattr.evaluation.EvaluationSettings.for_samples`: per-sample keyword arguments and
  ground-truth masks). The workers stay up for the next call with the same Ray, worker count and threads
  (:func:`release_workers` ends them), so only the first call pays their start-up.
* **Merged into the same table.** A sample's Sensitivity-n and metric values depend on nothing but that
  sample: the subsets are drawn per n from the seed (:class:`~gradattr.metrics.sensitivity.SubsetPlan`),
  identically on every worker. Each worker sends back its shard's batches
  (:class:`~gradattr.evaluation.BatchResult`); the driver adds them in data order to the same
  :class:`~gradattr.evaluation.Checkpoint` the single-process run keeps, so the table is the single-process
  one for the same seed. Timings (``seconds``) are summed over the workers (compute time, not wall-clock).
* **Observers and checkpoints on the driver.** With ``on_batch``, each worker sends back every batch's
  targets and attribution maps, and the driver calls ``on_batch`` batch by batch in data order, as the
  single-process run does. With ``checkpoint``, the driver saves the finished batches after each shard, in
  :func:`gradattr.evaluate`'s format and key: a later call with the same model, data and settings resumes
  after them, with any number of workers or with :func:`gradattr.evaluate` itself.

Ray is an optional dependency (``pip install "gradattr[ray]"``), imported only when :func:`evaluate` runs.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from gradattr.evaluation import (
    BatchResult,
    Checkpoint,
    EvaluatedBatch,
    EvaluationSettings,
    Methods,
    SensitivityTable,
    evaluated_batch,
    measure_batch,
)
from gradattr.evaluation.settings import check_positive
from gradattr.memory import MemoryLimit, budget, parse_memory, set_max_memory

RAY_EXTRA = 'pip install "gradattr[ray]"'
"""How to install the optional Ray dependency (named in the error when Ray is missing)."""
SHARDS_PER_WORKER = 4
"""Default shards per worker: enough for a worker that finishes early to take over work (and for progress
and checkpoints to advance), few enough that per-shard overhead (a task call, one subset plan) stays small."""


def import_ray() -> ModuleType:
    """The ``ray`` module.

    Raises:
        ImportError: Ray is not installed, with the command that installs gradattr's ``ray`` extra.
    """
    try:
        import ray
    except ImportError as error:
        raise ImportError(f"gradattr.distributed needs Ray, an optional dependency: {RAY_EXTRA}") from error
    return ray


@dataclass(frozen=True)
class _Shard:
    """Samples ``start:stop`` of the data: whole batches of :func:`evaluate`'s ``batch_size`` (the last one may
    be shorter where the data ends)."""

    start: int
    stop: int


class _Worker:
    """A Ray actor: runs torch on ``threads`` threads and measures shards with the model it was sent last."""

    def __init__(self, threads: int) -> None:
        torch.set_num_threads(threads)
        self.model: nn.Module | None = None

    def load(self, model: nn.Module, max_memory: int | None) -> None:
        """Keep ``model`` (deserialised once here) for the following shards, with this memory budget."""
        set_max_memory(max_memory)
        self.model = model

    def unload(self) -> None:
        """Drop the model (its memory is freed while the worker waits for the next call)."""
        self.model = None

    def run(self, x: Tensor, y: Tensor | None, settings: EvaluationSettings, record: bool) -> list[BatchResult]:
        """Every batch of the shard ``(x, y)`` measured with ``settings`` (cut to the shard); the maps kept too
        if ``record``."""
        if self.model is None:
            raise RuntimeError("no model was loaded on this worker")
        results, first = [], 0
        for bx, by, call in settings.batches(x if y is None else (x, y)):
            results.append(measure_batch(self.model, bx, by, call, settings, first=first, keep_maps=record))
            first += bx.shape[0]
        return results

    def threads(self) -> int:
        """The worker's torch thread count (to check the setting reached the worker)."""
        return torch.get_num_threads()


@dataclass(frozen=True)
class WorkerSettings:
    """Where :func:`evaluate` runs and with how much of each machine (see its arguments of the same names).

    Raises:
        ValueError / TypeError: a count that is not a positive int, an empty address, a bad memory limit.
    """

    workers: int | None = None
    address: str | None = None
    threads_per_worker: int | None = None
    shards: int | None = None
    max_memory: MemoryLimit = None

    def __post_init__(self) -> None:
        check_positive("workers", self.workers)
        check_positive("threads_per_worker", self.threads_per_worker)
        check_positive("shards", self.shards)
        if self.address is not None and (not isinstance(self.address, str) or not self.address.strip()):
            raise ValueError(
                f"address must be a Ray address such as 'ray://host:10001' or 'auto', got {self.address!r}"
            )
        parse_memory(self.max_memory)


def evaluate(
    model: nn.Module,
    data: Tensor | tuple[Tensor, Tensor],
    methods: Methods | None = None,
    *,
    workers: int | None = None,
    address: str | None = None,
    threads_per_worker: int | None = None,
    shards: int | None = None,
    max_memory: MemoryLimit = None,
    progress: bool = True,
    on_batch: Callable[[EvaluatedBatch], None] | None = None,
    checkpoint: str | Path | None = None,
    **settings: Any,
) -> SensitivityTable:
    """:func:`gradattr.evaluate` (every method's attributions, their Sensitivity-n and the other metrics over a
    data set) on Ray workers.

    The result is the table of ``gradattr.evaluate`` with the same arguments: the same per-sample values
    (shards are whole batches, subsets are drawn per n from ``seed``) and the same rows. See the module
    docstring for how the work is shipped and merged.

    Args:
        model: the classifier, on the CPU (it must pickle: a class defined in an importable module or in
            ``__main__``). It is serialised once and sent once to each worker; this object is not changed.
            The workers are kept for later calls (:func:`release_workers`); they drop the model after the call.
        data: ``(x, y)`` tensors on the CPU, or ``x`` alone with ``target="predicted"``.
        methods: names from :data:`gradattr.METHODS` or label -> method name, as in :func:`gradattr.evaluate`;
            default the paper's six.
        workers: Ray actors to run; default one per CPU (of this machine, or of the cluster at ``address``).
        address: a Ray cluster to connect to (``"ray://host:10001"``, ``"auto"``); default a local Ray on this
            machine. A Ray already initialised in this process (``ray.init`` called by you) is used as it is.
            A local Ray started here stays up for later calls until ``ray.shutdown()`` or the end of the process.
        threads_per_worker: torch threads (and Ray CPUs) per worker; default the CPUs divided by ``workers``.
        shards: number of pieces the data is cut into (whole batches each); default
            ``SHARDS_PER_WORKER`` per worker, at most one per batch.
        max_memory: memory budget of each worker's passes (as :func:`gradattr.set_max_memory`); default on a
            local Ray this process's budget (:func:`gradattr.memory.budget`) divided by ``workers``, on a
            cluster each worker's own default (a quarter of its node's available RAM).
        progress: a progress bar over the samples, advanced as shards finish.
        on_batch: called on this process with an :class:`~gradattr.evaluation.EvaluatedBatch` per computed
            batch, in data order (the workers send the maps back for it); with ``checkpoint`` it must be a
            :class:`~gradattr.evaluation.ResumableObserver`.
        checkpoint: a file on this machine for the finished batches, rewritten after each shard, in
            :func:`gradattr.evaluate`'s format: a call with the same model, data, methods and settings resumes
            after them, with any number of workers, or locally.
        settings: every other keyword argument of :func:`gradattr.evaluate` (``target``, ``ns``,
            ``num_subsets``, ``baseline``, ``batch_size``, ``feature_groups``, ``method_options``, ``seed``,
            ``max_samples``, ``max_elements``, ``layer``, ``forward_kwargs``, ``output``, ``position``,
            ``max_fraction``, ``removal``, ``metrics``), with the same meaning; per-sample ``forward_kwargs``,
            ``position`` and metric masks are cut with each shard.

    Returns:
        A :class:`~gradattr.evaluation.SensitivityTable`; ``seconds`` are summed over the workers and
        ``resumed`` counts the batches taken from the checkpoint.

    Raises:
        ValueError / TypeError: bad arguments, before Ray is started.
        ImportError: Ray is not installed (:data:`RAY_EXTRA`).
        Exception: what a worker raised (a method failing on the model, say), re-raised here as its own type
            with the Ray error as its cause.

    Example:
        >>> from gradattr import distributed
        >>> table = distributed.evaluate(model, (x, y), ["saliency", "deeplift"], workers=4)
        >>> table = distributed.evaluate(model, (x, y), address="ray://head:10001", workers=32)
    """
    evaluation = EvaluationSettings.of(methods, settings)
    where = WorkerSettings(workers, address, threads_per_worker, shards, max_memory)
    x, y = _tensors(data)
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if any(t.device.type != "cpu" for t in (*model.parameters(), *model.buffers())):
        raise ValueError("gradattr.distributed runs its workers on the CPU: pass the model on the CPU")
    finished = Checkpoint.open(checkpoint, evaluation, model, data, on_batch)
    batches = list(evaluation.batches(x if y is None else (x, y)))
    total = sum(batch[0].shape[0] for batch in batches)
    start = 0
    for index, (bx, by, _) in enumerate(batches):
        if not finished.holds(index, bx, by):
            break
        start += bx.shape[0]
    if start == total:  # everything came from the checkpoint
        return finished.table(evaluation.sensitivity)

    ray = import_ray()
    pool = _Pool.acquire(ray, where)
    memory = parse_memory(where.max_memory)
    if memory is None and where.address is None:  # the workers share this machine's memory
        memory = budget(torch.device("cpu")) // len(pool.actors)
    size = evaluation.batch_size
    todo = _cut(start, total, size, where.shards or SHARDS_PER_WORKER * len(pool.actors))
    bar = tqdm(total=total, initial=start, desc="sensitivity-n", unit="sample", disable=not progress)
    completed = False
    try:
        pool.load(model, memory)

        def task(s: _Shard) -> tuple[Any, ...]:
            return _piece(x, s), _piece(y, s), evaluation.for_samples(s.start, s.stop, x.shape[0]), on_batch is not None

        for shard, results in pool.map(todo, task):
            bar.update(shard.stop - shard.start)
            if on_batch is not None:
                for index, result in enumerate(results, start=shard.start // size):
                    bx, _, call = batches[index]
                    on_batch(evaluated_batch(model, bx, result.targets, result.maps, call, evaluation, index * size))
            finished.add(results)
        completed = True
    finally:
        bar.close()
        if completed:
            pool.unload()
        else:  # shards may still be running: end the actors rather than wait for them
            pool.stop()
    return finished.table(evaluation.sensitivity)


def release_workers() -> None:
    """End the Ray actors :func:`evaluate` keeps for later calls (their CPUs and memory return to Ray)."""
    if _Pool.current is not None:
        _Pool.current.stop()


def _tensors(data: Any) -> tuple[Tensor, Tensor | None]:
    """``(x, y)`` (``y`` None for bare inputs), checked to be CPU tensors (labels, their count and empty data
    are checked where the batches are cut, :meth:`EvaluationSettings.batches` and the checkpoint's table)."""
    if isinstance(data, Tensor):
        x, y = data, None
    elif isinstance(data, (tuple, list)) and len(data) == 2 and all(isinstance(t, Tensor) for t in data):
        x, y = data
    else:
        raise TypeError(
            "gradattr.distributed.evaluate takes tensors: (x, y) or x alone with target='predicted' "
            f"(it cuts them into shards itself); got {type(data).__name__}"
        )
    if any(t.device.type != "cpu" for t in (x, y) if t is not None):
        raise ValueError("gradattr.distributed runs its workers on the CPU: pass the data on the CPU")
    return x, y


def _piece(values: Tensor | None, shard: _Shard) -> Tensor | None:
    """The shard's rows as a compact copy (a pickled slice would carry the whole tensor's storage)."""
    return None if values is None else values[shard.start : shard.stop].clone()


def _cut(start: int, samples: int, batch_size: int, shards: int) -> list[_Shard]:
    """Samples ``start:samples`` (``start`` on a batch boundary) as at most ``shards`` contiguous shards of
    whole batches, as equal in size as whole batches allow."""
    batches = math.ceil((samples - start) / batch_size)
    count = min(shards, batches)
    bounds = [min(samples, start + round(i * batches / count) * batch_size) for i in range(count + 1)]
    return [_Shard(a, b) for a, b in itertools.pairwise(bounds) if b > a]


class _Pool:
    """Ray actors that evaluate shards, kept between :func:`evaluate` calls with the same Ray connection, worker
    count and threads (so a second call pays no worker start-up); ended by :func:`release_workers`, by an
    error or interruption during a call, or with Ray."""

    current: _Pool | None = None

    def __init__(self, ray: ModuleType, actors: list[Any], key: tuple[Any, ...]) -> None:
        self.ray = ray
        self.actors = actors
        self.key = key

    @classmethod
    def acquire(cls, ray: ModuleType, settings: WorkerSettings) -> _Pool:
        """Connect to (or start) Ray and return the kept actors if they fit ``settings``, else new ones."""
        cpus = os.cpu_count() or 1
        if not ray.is_initialized():
            if settings.address is None:
                count = settings.workers or cpus
                threads = settings.threads_per_worker or max(1, cpus // count)
                ray.init(num_cpus=max(cpus, count * threads), include_dashboard=False)
            else:
                ray.init(address=settings.address)
        available = int(ray.cluster_resources().get("CPU", 0))
        count = settings.workers or max(1, available)
        threads = settings.threads_per_worker or max(1, available // count)
        context = ray.get_runtime_context()
        key = (context.get_job_id(), context.get_node_id(), count, threads)
        if cls.current is not None and cls.current.key == key:
            return cls.current
        if count * threads > available:
            raise ValueError(
                f"{count} workers x {threads} threads need {count * threads} CPUs, but Ray has {available}; "
                "use fewer workers or threads_per_worker (a local Ray keeps the CPUs it was started with: "
                "ray.shutdown() to start another)"
            )
        if cls.current is not None:
            cls.current.stop()
        actor = ray.remote(num_cpus=threads)(_Worker)
        cls.current = cls(ray, [actor.remote(threads) for _ in range(count)], key)
        return cls.current

    def load(self, model: nn.Module, max_memory: int | None) -> None:
        """Serialise ``model`` once (``ray.put``) and have every actor deserialise it once; waits for them, so
        a model that does not load on the workers fails here."""
        try:
            model_ref = self.ray.put(model)
        except Exception as error:
            raise TypeError(
                f"the model cannot be sent to Ray workers ({type(error).__name__}: {error}); define its class in "
                "an importable module"
            ) from error
        self._get([actor.load.remote(model_ref, max_memory) for actor in self.actors])

    def unload(self) -> None:
        """Have the actors drop the model (not waited for)."""
        for actor in self.actors:
            actor.unload.remote()

    def map(
        self, shards: list[_Shard], arguments: Callable[[_Shard], tuple[Any, ...]]
    ) -> Iterator[tuple[_Shard, list[BatchResult]]]:
        """``run(*arguments(shard))`` for every shard, each on the next free actor; yields the results in shard
        order (a shard that finishes early is held until the ones before it are done)."""
        pending = iter(enumerate(shards))
        running: dict[Any, tuple[int, Any]] = {}
        finished: dict[int, list[BatchResult]] = {}

        def submit(actor: Any) -> None:
            for index, shard in pending:
                running[actor.run.remote(*arguments(shard))] = (index, actor)
                return

        for actor in self.actors:
            submit(actor)
        following = 0
        while running:
            (ref,), _ = self.ray.wait(list(running), num_returns=1)
            index, actor = running.pop(ref)
            finished[index] = self._get(ref)
            submit(actor)
            while following in finished:
                yield shards[following], finished.pop(following)
                following += 1

    def stop(self) -> None:
        """End the actors (their CPUs return to Ray)."""
        for actor in self.actors:
            with contextlib.suppress(self.ray.exceptions.ActorHandleNotFoundError):  # of a Ray session that ended
                self.ray.kill(actor)
        self.actors = []
        if _Pool.current is self:
            _Pool.current = None

    def _get(self, refs: Any) -> Any:
        """``ray.get(refs)``; a worker's exception is re-raised as its own type (the Ray error its cause)."""
        try:
            return self.ray.get(refs)
        except self.ray.exceptions.RayTaskError as error:
            cause = getattr(error, "cause", None)
            if isinstance(cause, Exception):
                raise cause from error
            raise
