"""One object per run that owns the data: training batches, probe batches, and what they mean.

The training loop only calls :func:`build_data` and the three methods of :class:`RunData`, so the
three kinds of data of `kinds.py` plug into the same loop:

- :class:`ViewSourceData`: 3DIEBench and the built-in procedural objects, through the tf.data
  pipeline of `pipeline.py` (views, actions and latents are made on the host);
- :class:`ImageData`: CIFAR-100 / TinyImageNet (augmentations) and STL-10 (saccades), whose
  source images sit in host memory (`image_sources.py`); the host gathers them
  (`image_pipeline.py`) and a jitted view maker turns them into view sequences on the devices
  (`view_makers.py`).

Every batch a `RunData` yields is a global, batch-sharded batch of the DESIGN.md contract, and a
pure function of (seed, step): resuming at step s replays exactly the batches an uninterrupted
run would have seen.
"""

from __future__ import annotations

import abc
import math
import os
from collections.abc import Iterator

import jax
import ml_collections
import numpy as np
from jax.sharding import Mesh

from seqjepa_jax import methods
from seqjepa_jax.data import image_pipeline, kinds, pipeline
from seqjepa_jax.data.image_sources import ImageArrays
from seqjepa_jax.data.sources import ArraySource, ViewSource

DEFAULT_CACHE = os.path.join("~", ".cache", "seqjepa_jax")
Batch = dict[str, jax.Array]


class RunData(abc.ABC):
    """The data of a run (see the module docstring).

    Attributes:
      num_train_examples: objects or images of the self-supervised split (sets the epoch length).
      individual_target_name: what the per-view probe regresses ('rotation', 'augmentation',
        'position'), used to name the report's `individual_<name>_r2_*` entries.
    """

    num_train_examples: int
    individual_target_name: str

    @abc.abstractmethod
    def describe(self) -> dict[str, str]:
        """One line per split, for the start-up log."""

    @abc.abstractmethod
    def train_batches(self, start_step: int) -> Iterator[Batch]:
        """Endless training batches from `start_step` on."""

    @abc.abstractmethod
    def probe_batches(self, split: str, max_examples: int | None) -> Iterator[Batch]:
        """One pass over the 'train' (probe fitting) or 'eval' (held-out) split, fixed views;
        'ood' (scored only, never fitted on) where the data was built with its OOD split."""

    @property
    def ood_views(self) -> int | None:
        """Views per sequence of the 'ood' probe batches, or None without an OOD split."""
        return None

    def individual_targets(self, latents: np.ndarray) -> np.ndarray:
        """Per-view regression targets of the frozen 'individual' probe from batch latents."""
        return latents

    def check_fits(self) -> None:
        """Raises ValueError, before anything compiles, if the data cannot feed the batches."""
        if self.steps_per_epoch(self._config.train.batch_size) < 1:
            raise ValueError(
                f"config.train.batch_size={self._config.train.batch_size} exceeds the "
                f"{self.num_train_examples} training examples ({jax.process_count()} hosts): not "
                "a single step per epoch. Lower the batch size."
            )

    def steps_per_epoch(self, global_batch_size: int) -> int:
        """Training steps per epoch, identical on every host."""
        return pipeline.steps_per_epoch(
            self.num_train_examples, global_batch_size, jax.process_count()
        )


def _check_split(split: str, ood: bool = False) -> None:
    if split == "ood" and not ood:
        raise ValueError(
            "No 'ood' split: build the data with build_data(..., ood=True) (evaluation with "
            "--ood / config.eval.ood), which needs an OOD split of 3D views (see ood_source)."
        )
    if split not in ("train", "eval", "ood"):
        raise ValueError(f"split must be 'train', 'eval' or 'ood'; got {split!r}.")


# ------------------------------------------------------------------------------------------------
# 3DIEBench and the procedural objects.


def build_view_sources(config: ml_collections.ConfigDict) -> tuple[ViewSource, ViewSource]:
    """(train source, held-out source) for `config.data`; raises clear errors on bad data."""
    data = config.data
    if data.name == "procedural":
        arrays = _procedural_splits(config, ("train", "val"))
        return ArraySource(arrays["train"]), ArraySource(arrays["val"])
    from seqjepa_jax.data.threediebench import ThreeDIEBenchSource

    if not data.data_dir:
        raise ValueError(
            "config.data.data_dir is empty: point it at the 3DIEBench root (the folder with "
            "<synset>/<object>/image_k.jpg and train_images.npy), e.g. "
            "--config.data.data_dir=/data/3DIEBench."
        )
    kwargs = {
        "views_per_object": data.views_per_object,
        "validate_all_objects": data.verify_files,
        "on_bad_file": data.on_bad_file,
    }
    return (
        ThreeDIEBenchSource(data.data_dir, data.train_split, **kwargs),
        ThreeDIEBenchSource(data.data_dir, data.eval_split, **kwargs),
    )


def _procedural_splits(config: ml_collections.ConfigDict, splits: tuple[str, ...]) -> dict:
    """Splits of the built-in objects from (or rendered into) the procedural cache."""
    from seqjepa_jax.data import procedural, procedural_cache

    data = config.data
    spec = procedural.ProceduralConfig(
        num_train_objects=data.procedural.num_train_objects,
        num_val_objects=data.procedural.num_val_objects,
        num_ood_objects=data.procedural.num_ood_objects,
        views_per_object=data.views_per_object,
        image_size=data.procedural.render_size,
        seed=data.procedural.seed,
        max_angle=data.procedural.max_angle,
        vary_lighting=data.procedural.vary_lighting,
    )
    cache = os.path.expanduser(data.data_dir or os.path.join(DEFAULT_CACHE, "procedural"))
    return procedural_cache.load_or_render(cache, spec, splits=splits)


def check_ood_split(config: ml_collections.ConfigDict) -> None:
    """ValueError naming the fix when `config` has no OOD split to evaluate (`kinds.ood_problem`,
    and for 3DIEBench a missing OOD index file); cheap, so callers run it before compiling."""
    problem = kinds.ood_problem(config)
    if problem:
        raise ValueError(problem)
    data = config.data
    if data.name == "3diebench":
        import tensorflow as tf

        from seqjepa_jax.data.threediebench import split_files

        index = f"{data.ood_dir.rstrip('/')}/{split_files(data.ood_split)[0]}"
        if not tf.io.gfile.exists(index):
            raise ValueError(
                f"No OOD split at config.data.ood_dir={data.ood_dir!r}: {index} is missing. "
                "Point ood_dir at the 3DIEBench-OOD root holding the object folders (views "
                f"2..5, spec §6.2) and {data.ood_split}_images.npy / _labels.npy (the official "
                "OOD objects are val_images.npy[6000:] and val_labels.npy[6000:])."
            )


def ood_source(config: ml_collections.ConfigDict) -> ViewSource:
    """The OOD split: the procedural 'ood' objects or the 3DIEBench-OOD tree (spec §6.2)."""
    check_ood_split(config)
    data = config.data
    if data.name == "procedural":
        return ArraySource(_procedural_splits(config, ("ood",))["ood"])
    from seqjepa_jax.data.threediebench import ThreeDIEBenchSource

    return ThreeDIEBenchSource(
        data.ood_dir,
        data.ood_split,
        view_ids=kinds.OOD_VIEW_IDS,
        validate_all_objects=data.verify_files,
        on_bad_file=data.on_bad_file,
    )


class ViewSourceData(RunData):
    """3DIEBench / procedural objects through the host tf.data pipeline (`pipeline.py`)."""

    individual_target_name = "rotation"

    def __init__(
        self,
        config: ml_collections.ConfigDict,
        mesh: Mesh,
        sources: tuple[ViewSource, ViewSource],
        ood: ViewSource | None = None,
    ) -> None:
        self._config, self._mesh = config, mesh
        self.train_source, self.eval_source = sources
        self.ood_source = ood
        self.num_train_examples = self.train_source.num_objects

    @property
    def ood_views(self) -> int | None:
        """Extracted views of OOD objects: config.eval.num_views, capped by the views they have."""
        if self.ood_source is None:
            return None
        return min(int(self._config.eval.num_views), int(self.ood_source.views_per_object))

    def describe(self) -> dict[str, str]:
        """See :meth:`RunData.describe`."""
        out = {
            "train_data": self.train_source.describe(),
            "eval_data": self.eval_source.describe(),
        }
        if self.ood_source is not None:
            out["ood_data"] = self.ood_source.describe()
        return out

    def check_fits(self) -> None:
        """The pipeline's checks with the config fields named (`startup_checks.check_data_fits`)."""
        from seqjepa_jax.startup_checks import check_data_fits

        check_data_fits(self._config, self.train_source, self.eval_source, jax.process_count())

    def train_batches(self, start_step: int) -> Iterator[Batch]:
        """See :meth:`RunData.train_batches`."""
        config = self._config
        dataset = pipeline.train_batches(
            self.train_source,
            num_views=methods.training_views(config),
            global_batch_size=config.train.batch_size,
            latent_type=config.data.latent_type,
            seed=config.seed,
            start_step=start_step,
            image_size=config.data.image_size,
            mean=config.data.mean,
            std=config.data.std,
        )
        return pipeline.global_batch_iterator(dataset.as_numpy_iterator(), self._mesh)

    def probe_batches(self, split: str, max_examples: int | None) -> Iterator[Batch]:
        """See :meth:`RunData.probe_batches` (probes fit on the SSL split, as officially)."""
        _check_split(split, ood=self.ood_source is not None)
        config = self._config
        sources = {"train": self.train_source, "eval": self.eval_source, "ood": self.ood_source}
        dataset = pipeline.eval_batches(
            sources[split],
            num_views=self.ood_views if split == "ood" else config.eval.num_views,
            global_batch_size=config.eval.batch_size,
            latent_type=config.data.latent_type,
            seed=config.seed,
            image_size=config.data.image_size,
            mean=config.data.mean,
            std=config.data.std,
        )
        if max_examples is not None:
            dataset = dataset.take(math.ceil(max_examples / config.eval.batch_size))
        return pipeline.global_batch_iterator(dataset.as_numpy_iterator(), self._mesh)

    def individual_targets(self, latents: np.ndarray) -> np.ndarray:
        """Absolute quaternions (scalar-last) of the views' Euler angles (spec §6.1)."""
        from seqjepa_jax.evaluation.report import rotation_targets

        return rotation_targets(latents)


# ------------------------------------------------------------------------------------------------
# Image datasets: augmentations and saccades.


def load_image_split(config: ml_collections.ConfigDict, split: str) -> ImageArrays:
    """One split of CIFAR-100 / STL-10 (TFDS) or TinyImageNet (release layout) in memory."""
    from seqjepa_jax.data import image_sources

    data = config.data
    if data.name in image_sources.TFDS_NAMES:
        return image_sources.load_tfds_images(
            image_sources.TFDS_NAMES[data.name],
            split,
            data_dir=data.data_dir or None,
            download=data.download,
        )
    if data.name == "tinyimagenet":
        if not data.data_dir:
            raise ValueError(
                "config.data.data_dir is empty: point it at the unzipped tiny-imagenet-200 "
                "folder (http://cs231n.stanford.edu/tiny-imagenet-200.zip)."
            )
        return image_sources.load_tinyimagenet(data.data_dir, split)
    raise ValueError(f"config.data.name={data.name!r} has no in-memory reader.")


def load_split_saliency(config: ml_collections.ConfigDict, split: str) -> np.ndarray | None:
    """Released STL-10 saliency maps of a split, or None for the built-in saliency."""
    saccade = config.data.saccades
    if not saccade.saliency_dir or not saccade.use_saliency:
        return None
    from seqjepa_jax.data import saliency_files

    folder = {"unlabelled": "unlabeled"}.get(split, split)  # TFDS vs the release's spelling
    return saliency_files.load_stl10_saliency(saccade.saliency_dir, folder)


def build_view_maker(config: ml_collections.ConfigDict):  # noqa: ANN201
    """The jitted-able view maker of an image dataset (`view_makers.py`)."""
    from seqjepa_jax.data import view_makers

    data = config.data
    num_views = methods.training_views(config)  # probe views: `train_and_probe_view_fns`
    if kinds.dataset_kind(data.name) == "augment":
        return view_makers.AugmentedViews(
            num_views=num_views,
            image_size=data.image_size,
            use_blur=data.augment.use_blur,
            normalize_across_views=data.augment.normalize_across_views,
            mean=tuple(data.mean),
            std=tuple(data.std),
            seed=config.seed,
        )
    s = data.saccades
    return view_makers.SaccadeViews(
        num_views=num_views,
        fovea_size=s.fovea_size,
        inhibition_radius=s.inhibition_radius or s.fovea_size // 2,
        use_saliency=s.use_saliency,
        inhibition_of_return=s.inhibition_of_return,
        transposed_centre=s.transposed_centre,
        glimpse_from=s.glimpse_from,
        centre_bias_weight=s.centre_bias_weight,
        mean=tuple(data.mean),
        std=tuple(data.std),
        seed=config.seed,
    )


class ImageData(RunData):
    """Source images in host memory, views made on the devices (module docstring)."""

    def __init__(
        self,
        config: ml_collections.ConfigDict,
        mesh: Mesh,
        splits: dict[str, ImageArrays],
        saliency: dict[str, np.ndarray | None],
    ) -> None:
        from seqjepa_jax.data import view_makers

        self._config, self._mesh = config, mesh
        self._splits, self._saliency = splits, saliency
        self.num_train_examples = splits["ssl"].num_examples
        kind = kinds.dataset_kind(config.data.name)
        self.individual_target_name = "augmentation" if kind == "augment" else "position"
        self._train_views, self._probe_views = view_makers.train_and_probe_view_fns(
            build_view_maker(config), mesh, config.eval.num_views
        )

    def describe(self) -> dict[str, str]:
        """See :meth:`RunData.describe`."""
        return {f"{name}_data": arrays.describe() for name, arrays in self._splits.items()}

    def _layout(self) -> dict[str, int]:
        return {"process_index": jax.process_index(), "process_count": jax.process_count()}

    def train_batches(self, start_step: int) -> Iterator[Batch]:
        """See :meth:`RunData.train_batches`."""
        host = image_pipeline.train_image_batches(
            self._splits["ssl"],
            global_batch_size=self._config.train.batch_size,
            seed=self._config.seed,
            start_step=start_step,
            saliency=self._saliency["ssl"],
            **self._layout(),
        )
        for raw in pipeline.global_batch_iterator(host, self._mesh):
            yield self._train_views(raw)

    def probe_batches(self, split: str, max_examples: int | None) -> Iterator[Batch]:
        """See :meth:`RunData.probe_batches`."""
        _check_split(split)
        name = "probe_train" if split == "train" else "eval"
        host = image_pipeline.eval_image_batches(
            self._splits[name],
            global_batch_size=self._config.eval.batch_size,
            max_examples=max_examples,
            saliency=self._saliency[name],
            **self._layout(),
        )
        for raw in pipeline.global_batch_iterator(host, self._mesh):
            yield self._probe_views(raw)


def build_data(config: ml_collections.ConfigDict, mesh: Mesh, *, ood: bool = False) -> RunData:
    """The :class:`RunData` of `config.data`; reads (or renders) every split before returning.

    `ood=True` also reads the OOD split (`ood_source`, spec §6.2) for `probe_batches("ood")`;
    ValueError naming the fix where there is none (`check_ood_split`).
    """
    data = config.data
    if ood:
        check_ood_split(config)
    if kinds.dataset_kind(data.name) == "views":
        extra = ood_source(config) if ood else None
        return ViewSourceData(config, mesh, build_view_sources(config), extra)
    if data.name == "imagenet":
        from seqjepa_jax.data.imagenet import ImageNetData

        return ImageNetData(config, mesh)
    names = {
        "ssl": data.train_split,
        "probe_train": data.probe_train_split or data.train_split,
        "eval": data.eval_split,
    }
    splits: dict[str, ImageArrays] = {}
    for role, split in names.items():
        cached = next((splits[r] for r, s in names.items() if s == split and r in splits), None)
        splits[role] = cached if cached is not None else load_image_split(config, split)
    saliency = {role: load_split_saliency(config, split) for role, split in names.items()}
    return ImageData(config, mesh, splits, saliency)
