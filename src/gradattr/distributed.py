"""Sensitivity-n over a data set on Ray: :func:`gradattr.evaluate` run by several workers, one table.

What is computed is exactly :func:`gradattr.evaluate`'s: every method's attributions and their Sensitivity-n
(Ancona et al., ICLR 2018, Sec. 4.1) for every sample. How:

* **Shards of whole batches.** The samples are cut into batches of ``batch_size`` as the single-process run
  cuts them, and the batches into contiguous shards (sample ranges that start on a batch boundary). Every
  batch therefore holds the same samples at the same positions as in the single-process run, which matters
  for methods whose noise depends on the position in the batch (SmoothGrad, Shapley sampling).
* **The model shipped once per worker.** Each worker is a Ray actor that fixes its torch threads when it
  starts (``threads_per_worker``, so N workers do not oversubscribe the cores). Per call the model is
  serialised once (``ray.put``) and each worker deserialises it once, with its memory budget, then runs
  :func:`gradattr.evaluate` on one shard after another (shards go to whichever worker is free). The workers
  stay up for the next call with the same Ray, worker count and threads (:func:`release_workers` ends them),
  so only the first call pays their start-up.
* **Merged into the same table.** Sensitivity-n of a sample depends on nothing but that sample: the subsets
  are drawn per n from the seed (:class:`~gradattr.metrics.sensitivity.SubsetPlan`), identically on every
  worker. The driver concatenates each method's per-sample values in shard order
  (:meth:`SensitivityResult.concat`), so the :class:`~gradattr.evaluation.SensitivityTable` equals the
  single-process one for the same seed: same per-sample values, same rows. Timings (``seconds``) are summed
  over the workers (compute time, not wall-clock time).
* **Observers and checkpoints on the driver.** With ``on_batch``, each worker sends back every batch's
  targets and attribution maps, and the driver calls ``on_batch`` batch by batch in data order, as the
  single-process run does. With ``checkpoint``, the driver saves the finished leading shards (and the
  observer's state) after each one; a later call with the same model, data and settings, with any number of
  workers, resumes after them. This checkpoint is not interchangeable with :func:`gradattr.evaluate`'s.

Ray is an optional dependency (``pip install "gradattr[ray]"``), imported only when :func:`evaluate` runs.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from gradattr.evaluation import (
    EvaluatedBatch,
    LayerFunction,
    Methods,
    Metric,
    MetricResult,
    ResumableObserver,
    SensitivityTable,
    check_method_options,
    check_metrics,
    check_removal,
    method_rows,
)
from gradattr.evaluation import evaluate as evaluate_locally
from gradattr.memory import MemoryLimit, budget, parse_memory, set_max_memory
from gradattr.metrics.sensitivity import SensitivityResult, check_fraction
from gradattr.progress import fingerprint, load_entry, save_entry

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


@dataclass
class _ShardResult:
    """What a worker sends back for one shard.

    Attributes:
        table: :meth:`SensitivityTable.to_state` of the shard (per-sample values, timings).
        targets: per batch, LongTensor(B) of the attributed classes (only with ``on_batch``).
        maps: per batch, method -> attributions (only with ``on_batch``).
    """

    table: dict[str, Any]
    targets: list[Tensor] | None = None
    maps: list[dict[str, Tensor]] | None = None


class _Recorder:
    """A worker's ``on_batch``: keeps each batch's targets and maps (on the CPU) to send to the driver."""

    def __init__(self) -> None:
        self.targets: list[Tensor] = []
        self.maps: list[dict[str, Tensor]] = []

    def __call__(self, batch: EvaluatedBatch) -> None:
        self.targets.append(batch.targets.cpu())
        self.maps.append({name: values.cpu() for name, values in batch.maps.items()})


class _Worker:
    """A Ray actor: runs torch on ``threads`` threads and evaluates shards with the model it was sent last."""

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

    def run(
        self,
        x: Tensor,
        y: Tensor | None,
        methods: dict[str, str],
        options: dict[str, Any],
        record: bool,
        metrics: Sequence[Metric] = (),
    ) -> _ShardResult:
        """:func:`gradattr.evaluate` on the shard ``(x, y)`` with ``options`` and ``metrics`` (cut to the shard's
        samples); the maps too if ``record``."""
        if self.model is None:
            raise RuntimeError("no model was loaded on this worker")
        recorder = _Recorder() if record else None
        data = x if y is None else (x, y)
        table = evaluate_locally(
            self.model, data, methods, progress=False, on_batch=recorder, metrics=metrics, **options
        )
        if recorder is None:
            return _ShardResult(table.to_state())
        return _ShardResult(table.to_state(), recorder.targets, recorder.maps)

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
        _positive("workers", self.workers)
        _positive("threads_per_worker", self.threads_per_worker)
        _positive("shards", self.shards)
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
    target: Literal["label", "predicted"] = "label",
    ns: Iterable[int] | None = None,
    num_subsets: int = 100,
    baseline: float | Tensor = 0.0,
    batch_size: int = 100,
    feature_groups: Tensor | None = None,
    method_options: Mapping[str, Mapping[str, Any]] | None = None,
    seed: int = 0,
    progress: bool = True,
    max_samples: int | None = None,
    max_elements: int | None = None,
    layer: str | nn.Module | None = None,
    on_batch: Callable[[EvaluatedBatch], None] | None = None,
    checkpoint: str | Path | None = None,
    max_fraction: float = 1.0,
    removal: Literal["layer", "input"] = "layer",
    metrics: Sequence[Metric] = (),
) -> SensitivityTable:
    """:func:`gradattr.evaluate` (every method's attributions and Sensitivity-n over a data set) on Ray workers.

    The result is the table of ``gradattr.evaluate`` with the same arguments: the same per-sample
    Sensitivity-n values (shards are whole batches, subsets are drawn per n from ``seed``) and the same rows.
    See the module docstring for how the work is shipped and merged.

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
        target, ns, num_subsets, baseline, batch_size, feature_groups, method_options, seed, max_samples,
            max_elements, layer, max_fraction, removal, metrics: as in :func:`gradattr.evaluate` (each metric
            runs on the workers, on their shards; its per-sample values are merged in data order).
        progress: a progress bar over the samples, advanced as shards finish.
        on_batch: called on this process with an :class:`~gradattr.evaluation.EvaluatedBatch` per computed
            batch, in data order (the workers send the maps back for it); with ``checkpoint`` it must be a
            :class:`~gradattr.evaluation.ResumableObserver`.
        checkpoint: a file on this machine for the finished leading shards, rewritten after each; a call with
            the same model, data, methods and settings resumes after them (with any number of workers).

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
    rows = method_rows(methods)
    names = list(rows)
    settings = WorkerSettings(workers, address, threads_per_worker, shards, max_memory)
    _check_evaluation(target, batch_size, max_samples, method_options, names, max_fraction, removal)
    x, y = _tensors(data, target, max_samples)
    if on_batch is not None and checkpoint is not None and not isinstance(on_batch, ResumableObserver):
        raise TypeError(
            "with checkpoint=, on_batch must be a ResumableObserver (with state_dict() and load_state_dict()) "
            f"so that its state resumes too; got {type(on_batch).__name__}"
        )
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if any(t.device.type != "cpu" for t in (*model.parameters(), *model.buffers())):
        raise ValueError("gradattr.distributed runs its workers on the CPU: pass the model on the CPU")
    if ns is not None and not isinstance(ns, (Sequence, Tensor)):
        ns = list(ns)
    options = {
        "target": target, "ns": ns, "num_subsets": num_subsets, "baseline": baseline, "batch_size": batch_size,
        "feature_groups": feature_groups, "method_options": method_options, "seed": seed,
        "max_elements": max_elements, "layer": layer, "max_fraction": max_fraction,
        **({"removal": removal} if removal != "layer" else {}),
    }  # fmt: skip
    metrics = check_metrics(metrics)
    if metrics:  # in the checkpoint key by their settings; shipped with each shard, cut to its samples
        options["metrics"] = [metric.config() for metric in metrics]
    finished = _Progress.open(checkpoint, model, x, y, rows, options, on_batch)
    if finished.done == x.shape[0]:  # everything came from the checkpoint
        return finished.merged(batch_size)

    ray = import_ray()
    pool = _Pool.acquire(ray, settings)
    max_memory = parse_memory(settings.max_memory)
    if max_memory is None and settings.address is None:  # the workers share this machine's memory
        max_memory = budget(torch.device("cpu")) // len(pool.actors)
    todo = _cut(finished.done, x.shape[0], batch_size, settings.shards or SHARDS_PER_WORKER * len(pool.actors))
    bar = tqdm(total=x.shape[0], initial=finished.done, desc="sensitivity-n", unit="sample", disable=not progress)
    completed = False
    try:
        pool.load(model, max_memory)
        options_ref = ray.put({key: value for key, value in options.items() if key != "metrics"})
        record = on_batch is not None

        def task(s: _Shard) -> tuple[Any, ...]:
            cut = [metric.for_samples(s.start, s.stop) for metric in metrics]
            return _piece(x, s), _piece(y, s), rows, options_ref, record, cut

        for shard, result in pool.map(todo, task):
            bar.update(shard.stop - shard.start)
            if on_batch is not None:
                _replay(model, x[shard.start : shard.stop], result, layer, on_batch)
            finished.add(shard, SensitivityTable.from_state(result.table))
        completed = True
    finally:
        bar.close()
        if completed:
            pool.unload()
        else:  # shards may still be running: end the actors rather than wait for them
            pool.stop()
    return finished.merged(batch_size)


def release_workers() -> None:
    """End the Ray actors :func:`evaluate` keeps for later calls (their CPUs and memory return to Ray)."""
    if _Pool.current is not None:
        _Pool.current.stop()


def _positive(name: str, value: Any, optional: bool = True) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int{' or None' if optional else ''}, got {value!r}")


def _check_evaluation(
    target: str,
    batch_size: int,
    max_samples: int | None,
    method_options: Mapping[str, Any] | None,
    names: list[str],
    max_fraction: float,
    removal: str,
) -> None:
    """The checks of :func:`gradattr.evaluate`'s arguments that need neither the model nor the data."""
    _positive("batch_size", batch_size, optional=False)
    _positive("max_samples", max_samples)
    if target not in ("label", "predicted"):
        raise ValueError(f"target must be 'label' or 'predicted', got {target!r}")
    check_method_options(method_options, names)
    check_fraction(max_fraction, "max_fraction")
    check_removal(removal)


def _tensors(data: Any, target: str, max_samples: int | None) -> tuple[Tensor, Tensor | None]:
    """``(x, y)`` (``y`` None for bare inputs), cut to ``max_samples``; checked to be CPU tensors."""
    if isinstance(data, Tensor):
        x, y = data, None
    elif isinstance(data, (tuple, list)) and len(data) == 2 and all(isinstance(t, Tensor) for t in data):
        x, y = data
    else:
        raise TypeError(
            "gradattr.distributed.evaluate takes tensors: (x, y) or x alone with target='predicted' "
            f"(it cuts them into shards itself); got {type(data).__name__}"
        )
    if y is None and target == "label":
        raise ValueError("target='label' needs labels: pass (x, y), or use target='predicted'")
    if y is not None and y.shape[0] != x.shape[0]:
        raise ValueError(f"data has {x.shape[0]} inputs but {y.shape[0]} labels")
    if x.dim() == 0 or x.shape[0] == 0:
        raise ValueError("data yielded no samples")
    if any(t.device.type != "cpu" for t in (x, y) if t is not None):
        raise ValueError("gradattr.distributed runs its workers on the CPU: pass the data on the CPU")
    if max_samples is not None:
        x, y = x[:max_samples], None if y is None else y[:max_samples]
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


def _replay(
    model: nn.Module, x: Tensor, result: _ShardResult, layer: str | nn.Module | None, on_batch: Callable
) -> None:
    """Call ``on_batch`` for each batch of a finished shard, as :func:`gradattr.evaluate` would have."""
    if result.targets is None or result.maps is None:
        raise RuntimeError("a worker sent no maps for on_batch")
    start = 0
    for targets, maps in zip(result.targets, result.maps, strict=True):
        rows = x[start : start + targets.shape[0]]
        start += targets.shape[0]
        function: nn.Module = model if layer is None else LayerFunction.of(model, rows, layer)
        attributed = rows if layer is None else function.layer_output
        on_batch(EvaluatedBatch(attributed, targets, maps, function, rows))


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
    ) -> Iterator[tuple[_Shard, _ShardResult]]:
        """``run(*arguments(shard))`` for every shard, each on the next free actor; yields the results in shard
        order (a shard that finishes early is held until the ones before it are done)."""
        pending = iter(enumerate(shards))
        running: dict[Any, tuple[int, Any]] = {}
        finished: dict[int, _ShardResult] = {}

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


def merge_tables(tables: Sequence[SensitivityTable], resumed: int = 0) -> SensitivityTable:
    """Tables of consecutive pieces of a data set (same methods, ns, subsets and seed) as one table: per method
    the per-sample values concatenated in the given order (:meth:`SensitivityResult.concat`), ``seconds``
    summed key by key.

    Raises:
        ValueError: no tables, tables of different methods, or results measured with other ns/subsets/seed.
    """
    if not tables:
        raise ValueError("no tables to merge")
    names = tables[0].methods
    if any(table.methods != names for table in tables):
        raise ValueError(f"tables of different methods do not merge: {[table.methods for table in tables]}")
    results = {name: SensitivityResult.concat([table.results[name] for table in tables]) for name in names}
    seconds: dict[str, float] = {}
    for table in tables:
        for key, value in table.seconds.items():
            seconds[key] = seconds.get(key, 0.0) + value
    metrics = {
        name: MetricResult.concat(name, [table.metrics[name].per_sample for table in tables])
        for name in tables[0].metrics
    }
    return SensitivityTable(results, seconds, resumed, metrics)


class _Progress:
    """The finished leading shards of one :func:`evaluate` call: in memory, and with a checkpoint file also on
    disk (the merged table so far, the number of samples it covers and the observer's state)."""

    def __init__(
        self, path: Path | None, key: str, observer: ResumableObserver | None, done: int, tables: list
    ) -> None:
        self.path = path
        self.key = key
        self.observer = observer
        self.done = done
        self.resumed = done
        self.tables: list[SensitivityTable] = tables

    @classmethod
    def open(
        cls,
        path: str | Path | None,
        model: nn.Module,
        x: Tensor,
        y: Tensor | None,
        rows: dict[str, str],
        options: dict[str, Any],
        on_batch: Callable[[EvaluatedBatch], None] | None,
    ) -> _Progress:
        """The finished shards in the checkpoint at ``path`` if it was saved for the same model (architecture
        and weights), data, methods, settings and initial observer state; else none (the observer keeps its
        initial state)."""
        if path is None:
            return cls(None, "", None, 0, [])
        observer = on_batch if isinstance(on_batch, ResumableObserver) else None
        initial = observer.state_dict() if observer is not None else None
        key = fingerprint({
            "runner": "gradattr.distributed", "model": repr(model), "weights": model.state_dict(), "x": x, "y": y,
            "methods": rows, "options": options, "observer": initial,
        })  # fmt: skip
        names = list(rows)

        def decode(payload: Mapping[str, Any]) -> tuple[int, SensitivityTable]:
            done, table = int(payload["done"]), SensitivityTable.from_state(payload["table"])
            if table.methods != names or table.samples != done or not 0 < done <= x.shape[0]:
                raise ValueError(f"a table of {table.samples} samples of {table.methods} for {done} finished samples")
            if observer is not None:
                observer.load_state_dict(payload["observer"])
            return done, table

        found = load_entry(path, key, decode)
        if found is None:
            if observer is not None:
                observer.load_state_dict(initial)
            return cls(Path(path), key, observer, 0, [])
        return cls(Path(path), key, observer, found[0], [found[1]])

    def add(self, shard: _Shard, table: SensitivityTable) -> None:
        """Record the next finished shard and, with a checkpoint, save everything finished so far."""
        self.tables.append(table)
        self.done = shard.stop
        if self.path is not None:
            state = self.observer.state_dict() if self.observer is not None else None
            save_entry(self.path, self.key, {"done": self.done, "table": self.merged().to_state(), "observer": state})

    def merged(self, batch_size: int | None = None) -> SensitivityTable:
        """The table of every finished shard; ``resumed`` counts the checkpoint's batches of ``batch_size``."""
        resumed = math.ceil(self.resumed / batch_size) if batch_size else 0
        return merge_tables(self.tables, resumed)
