"""Seeding the volume: the tiny model, local mirrors, model-folder copies and the hub's failure modes.

Nothing here reaches the network: the hub is exercised through HF_HUB_OFFLINE and a
fake HfApi; mirrors are built from one tiny model made once per session.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from processor.model import load_model
from processor.seeding import request as request_module
from processor.seeding.asr_sources import AsrHubSource
from processor.seeding.cli import build_parser, main
from processor.seeding.flow import seed
from processor.seeding.random_models import TINY, build_tiny
from processor.seeding.request import UsageError, resolve
from processor.seeding.sources import (
    HUB_MODELS,
    WEIGHTS,
    HubSource,
    MirrorSource,
    RandomSource,
    SeedError,
    Source,
    SourceFile,
    f5tts_model_yaml,
    random_architectures,
)
from processor.storage.volume import (
    ASR_FILES,
    FP16_WEIGHTS,
    MODEL_FILES,
    RUNPOD_VOLUME,
    AsrFolder,
    ModelFolder,
    Volume,
    sha256_file,
)

from tests.support.workers import run_cli as f5_batch

REPO_ROOT = Path(__file__).resolve().parent.parent
V1 = HUB_MODELS["F5TTS_v1_Base"]
TINY_ASR_FILES = (*ASR_FILES, "tokenizer.json")
WHISPER = "openai/whisper-large-v3-turbo"


@pytest.fixture(scope="session")
def tiny_template(tmp_path_factory: pytest.TempPathFactory) -> ModelFolder:
    """One tiny model for the whole session: building it costs seconds of imports."""
    folder = ModelFolder(tmp_path_factory.mktemp("template") / "tiny")
    build_tiny(folder)
    folder.write_checksums()
    return folder


def make_mirror(root: Path, template: ModelFolder, *, with_sums: bool = True) -> Path:
    """Place the tiny model's files at F5TTS_v1_Base's hub paths, like a downloaded hub snapshot."""
    lines = []
    for target, remote in V1.remote_files().items():
        dest = root / remote.hub_path
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(template.path / target, dest)
        lines.append(f"{sha256_file(dest)}  {remote.hub_path}\n")
    if with_sums:
        (root / "SHA256SUMS").write_text("".join(lines))
    return root


def corrupt(path: Path) -> None:
    """Flip one byte, keeping the size: only a digest can notice."""
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def mtimes(folder: ModelFolder) -> dict[str, int]:
    return {str(p.relative_to(folder.path)): p.stat().st_mtime_ns for p in folder.path.rglob("*") if p.is_file()}


def leftovers(volume: Path) -> list[str]:
    models = volume / "models"
    return sorted(p.name for p in models.iterdir()) if models.is_dir() else []


@dataclass
class CountingSource:
    """Wraps a source to record what the flow asked it to fetch, and where it staged it."""

    inner: Source
    listing: list[SourceFile] | None = None  # replaces inner.files(), e.g. digests taken earlier
    fetched: list[str] = field(default_factory=list)
    staging: list[Path] = field(default_factory=list)

    @property
    def label(self) -> str:
        return self.inner.label

    @property
    def all_or_nothing(self) -> bool:
        return self.inner.all_or_nothing

    def files(self) -> list[SourceFile]:
        return self.listing if self.listing is not None else self.inner.files()

    def fetch(self, file: SourceFile, staging: Path) -> Path:
        self.fetched.append(file.target)
        self.staging.append(staging)
        return self.inner.fetch(file, staging)


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "scripts/seed_volume.py", *args],
        cwd=REPO_ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_tiny_seeds_a_verified_folder_and_a_second_run_fetches_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--volume", str(tmp_path), "--tiny"]) == 0
    out = capsys.readouterr().out
    folder = Volume(tmp_path).model("tiny")
    assert folder.is_complete()
    assert folder.checksum_mismatches() == []
    assert set(folder.recorded_checksums()) == set(MODEL_FILES)
    assert "random weights" in out and "noise, not speech" in out
    assert out.count("  fetched  ") == len(MODEL_FILES) + len(TINY_ASR_FILES)  # and asr/tiny, the tiny Whisper
    assert leftovers(tmp_path) == ["tiny"]  # no staging left behind
    assert sorted(p.name for p in (tmp_path / "asr").iterdir()) == ["tiny"]

    before = mtimes(folder)
    assert main(["--volume", str(tmp_path), "--tiny"]) == 0
    out = capsys.readouterr().out
    assert "already seeded" in out
    assert "  fetched  " not in out
    assert out.count("  present  ") == len(MODEL_FILES) + len(TINY_ASR_FILES)
    assert mtimes(folder) == before


def test_tiny_model_loads_as_an_f5tts_cfm(tmp_path: Path) -> None:
    from f5_tts.model.cfm import CFM

    assert main(["--volume", str(tmp_path), "--tiny"]) == 0
    loaded = load_model(Volume(tmp_path).model("tiny"), device="cpu")
    assert isinstance(loaded.cfm, CFM)
    assert loaded.random_weights


def test_cli_seeds_from_a_hub_layout_mirror(tmp_path: Path, tiny_template: ModelFolder) -> None:
    mirror = make_mirror(tmp_path / "mirror", tiny_template)
    volume = tmp_path / "volume"
    volume.mkdir()

    result = run_cli("--volume", str(volume), "--from", str(mirror))

    assert result.returncode == 0, result.stderr
    folder = Volume(volume).model("F5TTS_v1_Base")
    assert folder.is_complete()
    for target in V1.remote_files():
        assert (folder.path / target).read_bytes() == (tiny_template.path / target).read_bytes()
    config = folder.config()
    assert config["name"] == "F5TTS_v1_Base"
    assert config["arch"]["dim"] == 1024  # from F5-TTS's own yaml, not the tiny model's
    assert config["source"]["weights"] == {"repo": "SWivid/F5-TTS", "file": V1.weights}
    assert "seeded at" in result.stdout and "5 fetched" in result.stdout
    assert leftovers(volume) == ["F5TTS_v1_Base"]


def test_corrupt_mirror_file_fails_and_leaves_no_folder(
    tmp_path: Path, tiny_template: ModelFolder, capsys: pytest.CaptureFixture[str]
) -> None:
    mirror = make_mirror(tmp_path / "mirror", tiny_template)
    weights = mirror / V1.remote_files()["model.safetensors"].hub_path
    expected = sha256_file(weights)
    corrupt(weights)
    volume = tmp_path / "volume"
    volume.mkdir()

    assert main(["--volume", str(volume), "--from", str(mirror)]) == 1

    err = capsys.readouterr().err
    assert "model.safetensors" in err
    assert f"expected sha256 {expected}, got {sha256_file(weights)}" in err
    assert "Traceback" not in err
    assert leftovers(volume) == []


def test_partial_folder_fetches_only_missing_or_damaged_files(tmp_path: Path, tiny_template: ModelFolder) -> None:
    mirror = make_mirror(tmp_path / "mirror", tiny_template)
    folder = Volume(tmp_path / "volume").model("F5TTS_v1_Base")
    seed(folder, MirrorSource(mirror, V1))
    (folder.path / "vocos" / "pytorch_model.bin").unlink()
    corrupt(folder.vocab)
    before = mtimes(folder)

    source = CountingSource(MirrorSource(mirror, V1))
    report = seed(folder, source)

    assert sorted(source.fetched) == ["vocab.txt", "vocos/pytorch_model.bin"]
    assert sorted(report.present) == ["config.json", "model.safetensors", "vocos/config.yaml"]
    assert folder.is_complete()
    after = mtimes(folder)
    for kept in report.present:
        assert after[kept] == before[kept]
    assert {p.parent for p in source.staging} == {folder.path.parent}
    assert {p.name for p in source.staging} == {".staging-F5TTS_v1_Base"}
    assert leftovers(tmp_path / "volume") == ["F5TTS_v1_Base"]


def test_complete_folder_is_not_fetched_again(tmp_path: Path, tiny_template: ModelFolder) -> None:
    mirror = make_mirror(tmp_path / "mirror", tiny_template)
    folder = Volume(tmp_path / "volume").model("F5TTS_v1_Base")
    seed(folder, MirrorSource(mirror, V1))

    source = CountingSource(MirrorSource(mirror, V1))
    report = seed(folder, source)

    assert source.fetched == []
    assert report.already_seeded


def test_too_little_free_space_fails_before_fetching(
    tmp_path: Path, tiny_template: ModelFolder, capsys: pytest.CaptureFixture[str]
) -> None:
    mirror = make_mirror(tmp_path / "mirror", tiny_template)
    volume = tmp_path / "volume"
    volume.mkdir()
    source = CountingSource(MirrorSource(mirror, V1))

    with pytest.raises(SeedError, match=r"need \d+ bytes .* only 1000 bytes"):
        seed(Volume(volume).model("F5TTS_v1_Base"), source, free_space=lambda _: 1000)
    assert source.fetched == []

    assert main(["--volume", str(volume), "--from", str(mirror)], free_space=lambda _: 1000) == 1
    err = capsys.readouterr().err
    assert "not enough free space" in err and "Traceback" not in err
    assert leftovers(volume) == []


def test_copy_between_volumes_verifies_the_source_folder(
    tmp_path: Path, tiny_template: ModelFolder, capsys: pytest.CaptureFixture[str]
) -> None:
    volume = tmp_path / "volume"
    volume.mkdir()
    assert main(["--volume", str(volume), "--from", str(tiny_template.path)]) == 0
    assert Volume(volume).model("tiny").is_complete()

    damaged = ModelFolder(tmp_path / "other" / "tiny")
    shutil.copytree(tiny_template.path, damaged.path)
    corrupt(damaged.vocoder_dir / "pytorch_model.bin")
    target = tmp_path / "volume2"
    target.mkdir()
    assert main(["--volume", str(target), "--from", str(damaged.path)]) == 1
    assert "vocos/pytorch_model.bin" in capsys.readouterr().err
    assert leftovers(target) == []


def test_hub_offline_fails_with_a_clear_message(tmp_path: Path) -> None:
    result = run_cli("--volume", str(tmp_path), "--model", "F5TTS_v1_Base", env={"HF_HUB_OFFLINE": "1"})

    assert result.returncode == 1
    assert "cannot reach the Hugging Face hub" in result.stderr
    assert "--tiny" in result.stderr and "--from DIR" in result.stderr
    assert "Traceback" not in result.stderr
    assert leftovers(tmp_path) == []


class FakeHub:
    """Stands in for huggingface_hub's HfApi and hf_hub_download, serving files from a mirror."""

    def __init__(self, mirror: Path) -> None:
        self.mirror = mirror
        self.downloads: list[str] = []

    def api(self) -> FakeHub:
        return self

    def get_paths_info(self, repo_id: str, paths: list[str], *, expand: bool = False) -> list[object]:
        from huggingface_hub.hf_api import RepoFile

        infos: list[object] = []
        for path in paths:
            local = self.mirror / repo_id / path
            if not local.is_file():
                continue  # like the hub: a path the repository lacks is left out of the answer
            size = local.stat().st_size
            # Like the hub: LFS files (weights) carry a sha256, small git files (vocab.txt, config.yaml) do not.
            is_lfs = local.suffix in (".safetensors", ".bin")
            lfs = {"size": size, "oid": sha256_file(local), "pointerSize": 134} if is_lfs else None
            infos.append(RepoFile(path=path, size=size, oid="0" * 40, lfs=lfs))  # type: ignore[no-untyped-call]
        return infos

    def download(self, repo_id: str, filename: str, *, local_dir: Path) -> str:
        self.downloads.append(f"{repo_id}/{filename}")
        dest = Path(local_dir) / filename
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.mirror / repo_id / filename, dest)
        return str(dest)


@pytest.fixture
def fake_hub(tmp_path: Path, tiny_template: ModelFolder, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    import huggingface_hub

    hub = FakeHub(make_mirror(tmp_path / "hub", tiny_template, with_sums=False))
    monkeypatch.setattr(huggingface_hub, "HfApi", hub.api)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", hub.download)
    yield hub


def test_hub_source_uses_lfs_digests_and_downloads_into_staging(tmp_path: Path, fake_hub: FakeHub) -> None:
    files = {file.target: file for file in HubSource(V1).files()}
    weights = fake_hub.mirror / V1.remote_files()["model.safetensors"].hub_path
    assert files["model.safetensors"].sha256 == sha256_file(weights)
    assert files["vocab.txt"].sha256 is None

    folder = Volume(tmp_path / "volume").model("F5TTS_v1_Base")
    report = seed(folder, HubSource(V1))

    assert folder.is_complete()
    assert sorted(fake_hub.downloads) == sorted(r.hub_path for r in V1.remote_files().values())
    assert len(report.fetched) == len(MODEL_FILES)


def test_asr_hub_source_lists_what_the_repository_has_with_lfs_digests(
    tmp_path: Path, fake_hub: FakeHub, tiny_volume: Volume
) -> None:
    template = tiny_volume.asr("tiny")
    make_asr_mirror(fake_hub.mirror, template)
    files = {file.target: file for file in AsrHubSource(WHISPER).files()}
    assert set(files) == set(TINY_ASR_FILES)  # the optional files it lacks are not asked for
    assert files["model.safetensors"].sha256 == template.recorded_checksums()["model.safetensors"]

    folder = Volume(tmp_path / "volume").asr("whisper-large-v3-turbo")
    seed(folder, AsrHubSource(WHISPER))
    assert folder.is_complete() and folder.recorded_checksums() == template.recorded_checksums()
    assert sorted(fake_hub.downloads) == sorted(f"{WHISPER}/{name}" for name in TINY_ASR_FILES)


def test_hub_download_with_wrong_digest_is_rejected(tmp_path: Path, fake_hub: FakeHub) -> None:
    source = HubSource(V1)
    listing = source.files()  # digests as the hub lists them, before the download goes wrong
    corrupt(fake_hub.mirror / V1.remote_files()["vocos/pytorch_model.bin"].hub_path)
    stale = CountingSource(source, listing=listing)

    folder = Volume(tmp_path / "volume").model("F5TTS_v1_Base")
    with pytest.raises(SeedError, match="vocos/pytorch_model.bin .* is corrupt: expected sha256"):
        seed(folder, stale)
    assert leftovers(tmp_path / "volume") == []


def test_unknown_model_is_a_usage_error_naming_the_known_ones(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--volume", str(tmp_path), "--model", "F5TTS_Huge"]) == 2
    err = capsys.readouterr().err
    assert "F5TTS_v1_Base" in err and "F5TTS_Base" in err
    assert leftovers(tmp_path) == []


# --- random full-size models and the fp16 copy ---------------------------------------------


def test_random_builds_f5tts_architecture_and_the_real_vocoder_config(tmp_path: Path) -> None:
    """`--random` takes the arch from F5-TTS's own yaml; checked from config, without building 337 M weights."""
    request = resolve(build_parser().parse_args(["--volume", str(tmp_path), "--random", "F5TTS_v1_Base"]))[0]

    assert request.name == "F5TTS_v1_Base-random"
    assert isinstance(request.source, RandomSource)
    config, vocoder = request.source.model.config, request.source.model.vocoder
    assert config["arch"] == f5tts_model_yaml("F5TTS_v1_Base")["arch"]
    assert config["random_weights"] is True
    assert vocoder["backbone"]["init_args"] == {"input_channels": 100, "dim": 512, "intermediate_dim": 1536,
                                                "num_layers": 8}
    assert vocoder["head"]["init_args"] == {"dim": 512, "n_fft": 1024, "hop_length": 256, "padding": "same"}
    assert vocoder["feature_extractor"]["init_args"] == {"sample_rate": 24000, "n_fft": 1024, "hop_length": 256,
                                                         "n_mels": 100, "padding": "center"}
    named = resolve(build_parser().parse_args(["--volume", str(tmp_path), "--random", "F5TTS_v1_Base",
                                               "--model", "bench", "--fp16-copy"]))[0]
    assert isinstance(named.source, RandomSource)
    assert (named.name, named.fp16_copy, named.source.model.config["name"]) == ("bench", True, "bench")


def test_random_full_size_checks_free_space_for_its_real_weights(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The weights' size comes from the shapes (337 M fp32 parameters), before anything is built."""
    assert main(["--volume", str(tmp_path), "--random", "F5TTS_v1_Base"], free_space=lambda _: 1000) == 1

    needed = int(capsys.readouterr().err.split("need ")[1].split(" bytes")[0])
    assert 337_000_000 * 4 < needed < 2 * 2**30  # the weights, four small files' allowance, the margin
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize(
    "args",
    [["--random", "F5TTS_Huge"], ["--random", "F5TTS_v1_Base", "--tiny"], ["--random", "F5TTS_v1_Base", "--from", "."]],
    ids=["unknown", "with-tiny", "with-from"],
)
def test_random_usage_errors(tmp_path: Path, args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--volume", str(tmp_path), *args]) == 2
    assert "error:" in capsys.readouterr().err
    assert leftovers(tmp_path) == []


def fp16_recorded(folder: ModelFolder) -> bool:
    return FP16_WEIGHTS in folder.recorded_checksums()


def test_fp16_copy_is_added_to_a_seeded_folder_without_contacting_the_source(tmp_path: Path) -> None:
    from safetensors.torch import load_file

    folder = Volume(tmp_path).model("tiny")
    seed(folder, RandomSource(TINY))
    assert not folder.weights_fp16.exists()

    source = CountingSource(RandomSource(TINY))
    report = seed(folder, source, fp16_copy=True)

    assert source.fetched == [] and report.fetched == [FP16_WEIGHTS]
    assert folder.is_complete() and fp16_recorded(folder)
    fp32, fp16 = load_file(str(folder.weights)), load_file(str(folder.weights_fp16))
    assert all(fp16[k].equal(v.half()) for k, v in fp32.items())
    assert folder.weights_fp16.stat().st_size < folder.weights.stat().st_size * 0.6
    assert seed(folder, source, fp16_copy=True).already_seeded
    assert seed(folder, source).already_seeded and folder.weights_fp16.exists()  # kept: it matches the weights


def test_fp16_copy_goes_when_the_weights_are_fetched_again_without_it(tmp_path: Path) -> None:
    folder = Volume(tmp_path).model("tiny")
    seed(folder, RandomSource(TINY), fp16_copy=True)
    corrupt(folder.weights)

    seed(folder, RandomSource(TINY))
    assert folder.is_complete() and not folder.weights_fp16.exists() and not fp16_recorded(folder)

    corrupt(folder.weights)
    report = seed(folder, RandomSource(TINY), fp16_copy=True)
    assert FP16_WEIGHTS in report.fetched and WEIGHTS in report.fetched
    assert folder.is_complete() and fp16_recorded(folder)


def test_an_unrecorded_fp16_file_makes_the_folder_incomplete(tmp_path: Path) -> None:
    """SHA256SUMS must vouch for every file the loader may read, the optional one included."""
    folder = Volume(tmp_path).model("tiny")
    seed(folder, RandomSource(TINY))
    shutil.copyfile(folder.weights, folder.weights_fp16)

    assert folder.checksum_mismatches() == [FP16_WEIGHTS] and not folder.is_complete()
    seed(folder, RandomSource(TINY))
    assert folder.is_complete() and not folder.weights_fp16.exists()


# --- `f5-batch seed`: the volume it is given, its help, and what the other commands import --------------------


def test_seed_command_creates_a_local_volume_that_does_not_exist(tmp_path: Path) -> None:
    volume = tmp_path / "new" / "vol"

    result = f5_batch("seed", "--volume", str(volume), "--tiny")

    assert result.returncode == 0, result.stderr
    folder = Volume(volume).model("tiny")
    assert folder.checksums_file.is_file() and folder.is_complete()
    assert f"tiny: seeded at {folder.path} from build_random (tiny, random weights)" in result.stdout
    asr = Volume(volume).asr("tiny")
    assert asr.is_complete() and set(asr.recorded_checksums()) == set(TINY_ASR_FILES)
    assert f"asr/tiny: seeded at {asr.path} from build_tiny_asr" in result.stdout
    assert "gibberish transcripts" in result.stdout  # a second run fetches nothing: see test_tiny_seeds_...


# --- the ASR model: --asr, --asr-model, --from a mirror; the tiny Whisper comes from the tiny_volume fixture ------


def make_asr_mirror(root: Path, template: AsrFolder, repo_id: str = WHISPER) -> Path:
    """The tiny Whisper's files at `repo_id`'s hub paths, their digests added to the mirror's SHA256SUMS."""
    lines = []
    for name in template.recorded_checksums():
        dest = root / repo_id / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(template.path / name, dest)
        lines.append(f"{sha256_file(dest)}  {repo_id}/{name}\n")
    sums = root / "SHA256SUMS"
    sums.write_text((sums.read_text() if sums.is_file() else "") + "".join(lines))
    return root


def test_asr_from_a_mirror_seeds_only_the_asr_model_verified_and_once(
    tmp_path: Path, tiny_volume: Volume, capsys: pytest.CaptureFixture[str]
) -> None:
    template = tiny_volume.asr("tiny")
    mirror = make_asr_mirror(tmp_path / "mirror", template)
    volume = tmp_path / "volume"

    assert main(["--volume", str(volume), "--asr", "--from", str(mirror)]) == 0
    out = capsys.readouterr().out
    folder = Volume(volume).asr("whisper-large-v3-turbo")
    assert folder.is_complete()
    assert folder.recorded_checksums() == template.recorded_checksums()  # every digest the mirror's
    assert out.count("  fetched  ") == len(TINY_ASR_FILES) and "asr/whisper-large-v3-turbo: seeded at" in out
    assert leftovers(volume) == []  # --asr alone: no TTS model
    assert sorted(p.name for p in (volume / "asr").iterdir()) == ["whisper-large-v3-turbo"]  # no staging left

    before = mtimes(folder)
    assert main(["--volume", str(volume), "--asr-model", WHISPER, "--from", str(mirror)]) == 0
    assert "already seeded" in capsys.readouterr().out and mtimes(folder) == before

    corrupt(mirror / WHISPER / "vocab.json")  # the mirror's SHA256SUMS still has the good digest
    (folder.path / "vocab.json").unlink()
    assert main(["--volume", str(volume), "--asr", "--from", str(mirror)]) == 1
    err = capsys.readouterr().err
    assert "vocab.json" in err and "is corrupt" in err
    assert not folder.is_complete()


def test_asr_with_a_tts_flag_seeds_both_from_one_mirror(
    tmp_path: Path, tiny_template: ModelFolder, tiny_volume: Volume, capsys: pytest.CaptureFixture[str]
) -> None:
    mirror = make_asr_mirror(make_mirror(tmp_path / "mirror", tiny_template), tiny_volume.asr("tiny"),
                             repo_id="openai/whisper-small")
    volume = Volume(tmp_path / "volume")

    assert main(["--volume", str(volume.root), "--model", "F5TTS_v1_Base", "--asr-model", "whisper-small",
                 "--from", str(mirror)]) == 0
    out = capsys.readouterr().out
    assert volume.model("F5TTS_v1_Base").is_complete() and volume.asr("whisper-small").is_complete()
    assert out.index("F5TTS_v1_Base: seeded") < out.index("asr/whisper-small: seeded")


def test_asr_seeding_checks_free_space_before_fetching(
    tmp_path: Path, tiny_volume: Volume, capsys: pytest.CaptureFixture[str]
) -> None:
    mirror = make_asr_mirror(tmp_path / "mirror", tiny_volume.asr("tiny"))
    volume = tmp_path / "volume"

    assert main(["--volume", str(volume), "--asr", "--from", str(mirror)], free_space=lambda _: 1000) == 1
    err = capsys.readouterr().err
    assert "not enough free space" in err and "only 1000 bytes" in err and "Traceback" not in err
    assert not (volume / "asr").exists() or not any((volume / "asr").iterdir())


@pytest.mark.parametrize(
    "args, message",
    [(["--tiny", "--asr-model", "openai/whisper-small"], "drop --asr-model"),
     (["--asr-model", "not a/repo!"], "invalid ASR model"),
     (["--asr", "--from", "/nonexistent-mirror"], "is not a directory")],
    ids=["tiny-with-asr-model", "bad-name", "missing-mirror"],
)
def test_asr_usage_errors(tmp_path: Path, args: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--volume", str(tmp_path), *args]) == 2
    assert message in capsys.readouterr().err


def test_a_whisper_mirror_without_a_required_file_is_refused(
    tmp_path: Path, tiny_volume: Volume, capsys: pytest.CaptureFixture[str]
) -> None:
    mirror = make_asr_mirror(tmp_path / "mirror", tiny_volume.asr("tiny"))
    (mirror / WHISPER / "preprocessor_config.json").unlink()
    assert main(["--volume", str(tmp_path / "volume"), "--asr", "--from", str(mirror)]) == 1
    assert "lacks preprocessor_config.json" in capsys.readouterr().err


def test_a_network_volume_that_is_not_mounted_is_a_usage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without its network volume a pod's /runpod-volume is the container disk: nothing is created there."""
    mount = tmp_path / "runpod-volume"
    monkeypatch.setattr(request_module, "RUNPOD_VOLUME", mount)
    for path in (mount, mount / "sub"):
        with pytest.raises(UsageError, match=rf"volume {path}: the network volume is not mounted \({mount} does not"):
            resolve(build_parser().parse_args(["--volume", str(path), "--tiny"]))
    assert main(["--volume", str(mount), "--tiny"]) == 2
    assert "the network volume is not mounted" in capsys.readouterr().err
    assert not mount.exists()

    mount.mkdir()  # mounted: a folder inside it is created like any local one
    requests = resolve(build_parser().parse_args(["--volume", str(mount / "sub"), "--tiny"]))
    assert [request.volume.root for request in requests] == [mount / "sub"] * 2


def test_a_volume_that_is_a_file_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "file").write_text("")
    assert main(["--volume", str(tmp_path / "file"), "--tiny"]) == 2
    assert f"error: volume {tmp_path / 'file'} is not a directory" in capsys.readouterr().err


@pytest.mark.skipif(RUNPOD_VOLUME.exists(), reason="a network volume is mounted here")
def test_seed_command_refuses_the_runpod_mount_point_when_nothing_is_mounted() -> None:
    result = f5_batch("seed", "--volume", str(RUNPOD_VOLUME), "--tiny")

    assert result.returncode == 2
    assert f"f5-batch seed: error: volume {RUNPOD_VOLUME}: the network volume is not mounted" in result.stderr
    assert not RUNPOD_VOLUME.exists()


def test_seed_help_lists_the_models_it_knows() -> None:
    result = f5_batch("seed", "--help")

    assert result.returncode == 0, result.stderr
    architectures = random_architectures()
    assert "F5TTS_v1_Base" in architectures and "E2TTS_Base" in architectures  # DiT and UNetT
    for name in (*HUB_MODELS, "tiny", "ARCH-random", ", ".join(architectures)):
        assert name in result.stdout
    for flag in ("--volume", "--model", "--from", "--tiny", "--random", "--fp16-copy", "--asr", "--asr-model"):
        assert flag in result.stdout


def test_other_commands_do_not_import_the_seeding_code() -> None:
    """`f5-batch` builds the seed flags for every command; only seeding itself imports what seeds."""
    code = ("import sys; from processor.cli import build_parser; build_parser().parse_args(['health']); "
            "print(sorted(m for m in sys.modules if m.startswith(('processor.seeding', 'processor.model', 'yaml'))))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "['processor.seeding', 'processor.seeding.cli']"
