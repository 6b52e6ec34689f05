"""The dependency rules of docs/architecture.md, checked on the source: every import, including
those inside functions, of every module of the package."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "sidrec"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, top_level_only: bool = False) -> set[str]:
    """Absolute names of the modules ``path`` imports (``from a import b`` gives ``a`` and ``a.b``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = tree.body if top_level_only else ast.walk(tree)
    names = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def sidrec_imports(name: str, top_level_only: bool = False) -> set[str]:
    """The package's modules that module ``name`` imports."""
    return {m for m in imports_of(MODULES[name], top_level_only) if m in MODULES}


def third_party(name: str) -> set[str]:
    return {m.split(".")[0] for m in imports_of(MODULES[name])} - {"sidrec"}


def under(name: str, *packages: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in packages)


def violations(sources: list[str], forbidden: tuple[str, ...]) -> list[str]:
    return [f"{s} imports {m}" for s in sources for m in sorted(sidrec_imports(s)) if under(m, *forbidden)]


def test_the_package_is_parsed():
    assert {"sidrec.pipeline", "sidrec.run", "sidrec.decode.ranker", "sidrec.models.encoder_decoder.network"} <= set(MODULES)


def test_data_knows_nothing_of_models_sids_or_training():
    data = [m for m in MODULES if under(m, "sidrec.data")]
    assert not violations(data, ("sidrec.models", "sidrec.tokenize", "sidrec.decode", "sidrec.train",
                                 "sidrec.evaluate", "sidrec.pipeline", "sidrec.run", "sidrec.serve",
                                 "sidrec.recommender", "sidrec.cli", "sidrec.experiments"))
    assert all("torch" not in third_party(m) for m in data)


# A model's glue (its plugin.py, the registry, the SID generators' shared options and objectives)
# connects it to the config and the token layout; everything else under sidrec/models is network code.
MODEL_GLUE = ("plugin", "registry", "sid_generator", "objectives", "__init__")
NETWORK_FILES = [m for m in MODULES if under(m, "sidrec.models") and MODULES[m].stem not in MODEL_GLUE]


@pytest.mark.parametrize("name", NETWORK_FILES)
def test_a_model_network_imports_only_torch(name):
    """... and the network files beside it (not the plug-in glue, which builds models from a config)."""
    own = {m for m in sidrec_imports(name) if not (under(m, "sidrec.models") and m in NETWORK_FILES)}
    assert not own, f"{name} imports {sorted(own)}"
    import sys

    assert third_party(name) <= {"torch", "__future__", "dataclasses", "math", "typing"} | set(sys.stdlib_module_names)


def test_model_glue_reaches_no_training_pipeline_or_serving():
    glue = [m for m in MODULES if under(m, "sidrec.models") and m not in NETWORK_FILES]
    assert not violations(glue, ("sidrec.train", "sidrec.pipeline", "sidrec.run", "sidrec.serve", "sidrec.decode",
                                 "sidrec.recommender", "sidrec.data", "sidrec.evaluate"))


def test_every_registered_model_is_a_plugin_folder():
    from sidrec.config import ModelConfig
    from sidrec.models import MODELS

    for name, plugin in MODELS.items():
        folder = PACKAGE / "models" / name
        assert (folder / "network.py").is_file() and (folder / "plugin.py").is_file(), name
        # its options: a ModelConfig declared in its folder, whose model.arch is the plug-in's name
        assert issubclass(plugin.options, ModelConfig) and plugin.options().arch == name, name
        assert plugin.options.__module__ == f"sidrec.models.{name}.plugin", name


# Module-level names of sidrec/config.py that hold presets: they may set any plug-in's options.
PRESET_NAMES = {"CPU_MODEL", "ITEM_SID_CPU", "PRESETS"}


def plugin_option_names() -> set[str]:
    """Every registered model plug-in's own options (the model.* keys beyond ModelConfig's)."""
    import dataclasses

    from sidrec.config import ModelConfig
    from sidrec.models import MODELS

    shared = {f.name for f in dataclasses.fields(ModelConfig)}
    return {f.name for p in MODELS.values() for f in dataclasses.fields(p.options)} - shared


def config_mentions(tree: ast.AST, names: set[str], prefix: str = "model.",
                    shared: frozenset = frozenset()) -> list[str]:
    """Where a module names one of ``names`` (as a field, attribute, name or string, ``<prefix><name>``
    included), module-level preset assignments aside. ``shared``: names other sections have too
    (``train.lr``), where only a ``<prefix><name>`` string counts."""
    targets = {id(top): top.targets if isinstance(top, ast.Assign) else [top.target]
               for top in tree.body if isinstance(top, (ast.Assign, ast.AnnAssign))}
    skipped = {id(node) for top in tree.body if id(top) in targets
               and any(isinstance(t, ast.Name) and t.id in PRESET_NAMES for t in targets[id(top)])
               for node in ast.walk(top)}
    hits = []
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        string = isinstance(node, ast.Constant) and isinstance(node.value, str)
        word = (node.attr if isinstance(node, ast.Attribute) else node.id if isinstance(node, ast.Name)
                else node.arg if isinstance(node, ast.arg) else node.value.removeprefix(prefix) if string else None)
        if word in names and (word not in shared or string and node.value == prefix + word):
            hits.append(f"line {node.lineno}: {word}")
    return hits


def test_the_config_names_no_model_plugins_option():
    """A plug-in's options live in its folder: sidrec/config.py (its presets aside) names none of
    them, so a model with new options needs no edit there."""
    names = plugin_option_names()
    assert {"head", "item_inputs", "text_sim", "d_kv", "num_experts", "positions", "objective"} <= names
    hits = config_mentions(ast.parse(MODULES["sidrec.config"].read_text(encoding="utf-8")), names)
    assert not hits, f"sidrec/config.py names plug-in options: {hits}"
    # the check can fail: a ModelConfig field or a LIMITS entry naming one is caught
    bad = ast.parse('class ModelConfig:\n    head: str = "catalog"\nLIMITS = {"model.d_kv": 1}\n'
                    'PRESETS: dict = {"tiny": {"model.text_sim": "true"}}\n')
    assert config_mentions(bad, names) == ["line 2: head", "line 3: d_kv"]


def tokenizer_option_names() -> set[str]:
    """Every registered tokenizer's own options (the tokenizer.* keys beyond TokenizerConfig's)."""
    import dataclasses

    from sidrec.config import TokenizerConfig
    from sidrec.tokenize import KINDS

    shared = {f.name for f in dataclasses.fields(TokenizerConfig)}
    return {f.name for cls in KINDS.values() for f in dataclasses.fields(cls.options)} - shared


def tokenizer_mentions(tree: ast.AST, names: set[str]) -> list[str]:
    """Where sidrec/config.py names a tokenizer's own option: a field of TokenizerConfig, or anywhere
    (presets aside) as in ``config_mentions``; an option another section has too (``lr``) only as a
    ``tokenizer.<name>`` string."""
    def fields(node):
        return {t.target.id for t in node.body if isinstance(t, ast.AnnAssign) and isinstance(t.target, ast.Name)}

    classes = [node for node in tree.body if isinstance(node, ast.ClassDef)]
    own = set().union(*(fields(c) for c in classes if c.name == "TokenizerConfig"))
    others = set().union(*(fields(c) for c in classes if c.name != "TokenizerConfig"))
    return ([f"TokenizerConfig.{name}" for name in sorted(own & names)]
            + config_mentions(tree, names, "tokenizer.", frozenset(names & others)))


def test_the_config_names_no_tokenizers_own_option():
    """A tokenizer's options live beside it (sidrec/tokenize/<kind>.py): sidrec/config.py (its presets
    aside) names none of them, so a tokenizer with new options needs no edit there."""
    names = tokenizer_option_names()
    assert names == {"normalize_residuals", "steps_per_level", "lr", "rqvae_steps", "rqvae_hidden",
                     "rqvae_latent_dim", "rqvae_beta", "whiten"}
    hits = tokenizer_mentions(ast.parse(MODULES["sidrec.config"].read_text(encoding="utf-8")), names)
    assert not hits, f"sidrec/config.py names tokenizer options: {hits}"
    # the check can fail: a TokenizerConfig field or a LIMITS entry naming one is caught, train.lr is not
    bad = ast.parse('class TokenizerConfig:\n    lr: float = 1e-3\nclass TrainConfig:\n    lr: float = 5e-4\n'
                    'LIMITS = {"tokenizer.rqvae_steps": 1, "tokenizer.lr": 2, "train.lr": 3}\n'
                    'x = cfg.tokenizer.whiten\nPRESETS: dict = {"tiny": {"tokenizer.steps_per_level": "20"}}\n')
    assert sorted(tokenizer_mentions(bad, names)) == ["TokenizerConfig.lr", "line 5: lr", "line 5: rqvae_steps",
                                                      "line 6: whiten"]


def test_every_tokenizer_declares_its_options_beside_it():
    from sidrec.config import TokenizerConfig
    from sidrec.tokenize import KINDS

    for kind, cls in KINDS.items():
        assert issubclass(cls.options, TokenizerConfig) and cls.options().kind == kind, kind
        assert cls.options.__module__.startswith("sidrec.tokenize."), kind


def test_decoding_depends_on_the_sid_table_not_on_models_or_training():
    decode = [m for m in MODULES if under(m, "sidrec.decode")]
    assert not violations(decode, ("sidrec.models", "sidrec.train", "sidrec.evaluate", "sidrec.pipeline",
                                   "sidrec.serve", "sidrec.recommender", "sidrec.experiments", "sidrec.config"))
    assert all("lightning" not in third_party(m) for m in decode)


def reachable(start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo.extend(sidrec_imports(name))
    return seen


@pytest.mark.parametrize("entry", ["sidrec.serve", "sidrec.recommender", "sidrec.cold_start", "sidrec.run",
                                   "sidrec.page.routes", "sidrec.page.explore"])
def test_serving_never_reaches_training_or_experiments(entry):
    """Everything the service can import, transitively (function-level imports included)."""
    modules = reachable(entry)
    bad = sorted(m for m in modules if under(m, "sidrec.train", "sidrec.pipeline", "sidrec.experiments",
                                              "sidrec.cli", "sidrec.baselines"))
    assert not bad, f"{entry} reaches {bad}"
    assert all("lightning" not in third_party(m) for m in modules)


def test_the_page_computes_without_the_web_framework_or_torch():
    """What the page shows is plain numpy over the catalog (sidrec.page.explore); only its routes
    know of FastAPI, and the service reaches it (sidrec.serve includes its router)."""
    assert "sidrec.page.routes" in reachable("sidrec.serve")
    assert not third_party("sidrec.page.explore") & {"fastapi", "starlette", "pydantic", "torch"}
    assert not violations(["sidrec.page.explore"], ("sidrec.serve", "sidrec.page.routes", "sidrec.recommender",
                                                    "sidrec.models", "sidrec.decode"))


def test_the_text_lookup_scores_need_no_training():
    """``sidrec.evaluate.lookup`` is fused with trained models' scores anywhere, serving included."""
    modules = reachable("sidrec.evaluate.lookup")
    bad = sorted(m for m in modules if under(m, "sidrec.train", "sidrec.pipeline", "sidrec.baselines", "sidrec.models"))
    assert not bad, f"sidrec.evaluate.lookup reaches {bad}"
    assert third_party("sidrec.evaluate.lookup") <= {"__future__", "numpy", "torch"}


def test_nothing_imports_experiments_or_the_cli():
    outside = [m for m in MODULES if not under(m, "sidrec.experiments", "sidrec.cli")]
    assert not violations(outside, ("sidrec.experiments", "sidrec.cli"))


def test_stages_do_not_import_the_pipeline():
    stages = [m for m in MODULES if under(m, "sidrec.data", "sidrec.tokenize", "sidrec.models", "sidrec.decode",
                                          "sidrec.train", "sidrec.evaluate", "sidrec.encode", "sidrec.run",
                                          "sidrec.serve", "sidrec.recommender", "sidrec.cold_start")]
    assert not violations(stages, ("sidrec.pipeline",))


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}

    def visit(name, path):
        state[name] = 1
        for nxt in sorted(graph[name]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt, path + [nxt])):
                return cycle
        state[name] = 2
        return None

    for name in sorted(graph):
        if name not in state and (cycle := visit(name, [name])):
            return cycle
    return None


def test_no_import_cycles_between_modules():
    """Module-level imports form no cycle (a package's __init__ re-exporting its modules excepted)."""
    graph = {m: {i for i in sidrec_imports(m, top_level_only=True) if MODULES[i].name != "__init__.py"}
             for m in MODULES}
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_the_data_readers_and_format_loaders_form_no_cycle_even_inside_functions():
    data = [m for m in MODULES if under(m, "sidrec.data") and MODULES[m].name != "__init__.py"]
    graph = {m: {i for i in sidrec_imports(m) if i in data} for m in data}
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


# --- the run-directory contract (sidrec.layout) ---------------------------------------------------
def artifact_names() -> set[str]:
    """Every file name sidrec.layout declares (a path's last part as well). Folder names
    (``checkpoints``, ``catalog``, ``tensorboard``) are words used for other things too, so only
    names with a suffix are checked."""
    import sidrec.layout as layout

    names = set()
    for key, value in vars(layout).items():
        if key.startswith("__"):
            continue
        for v in (value.values() if isinstance(value, dict) else value if isinstance(value, tuple) else (value,)):
            if isinstance(v, str):
                names.update({v, v.rsplit("/", 1)[-1]})
    return {n for n in names if "." in n.strip(".") and "{" not in n}


# File names of input formats and of Hugging Face model folders that happen to equal an artifact's.
NOT_ARTIFACTS = {("sidrec.data.loaders", "items.jsonl"), ("sidrec.data.tables", "items.jsonl"),
                 ("sidrec.encode", "config.json")}


def artifact_literals(name: str, names: set[str]) -> list[str]:
    tree = ast.parse(MODULES[name].read_text(encoding="utf-8"))
    docstrings = {id(n.body[0].value) for n in ast.walk(tree)
                  if isinstance(n, (ast.Module, ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef))
                  and n.body and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
    return [f"{name}:{node.lineno}: {node.value!r}" for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
            and (node.value in names or node.value.rsplit("/", 1)[-1] in names)
            and (name, node.value) not in NOT_ARTIFACTS]


def test_only_the_layout_names_artifact_files():
    names = artifact_names()
    assert {"config.json", "model.pt", "metrics.json", "sid_table.npz", "last.ckpt", "manifest.json"} <= names
    found = [hit for m in MODULES if m != "sidrec.layout" for hit in artifact_literals(m, names)]
    assert not found, "artifact file names outside sidrec.layout:\n" + "\n".join(found)


def test_the_artifact_check_finds_a_literal(tmp_path, monkeypatch):
    """The check above can fail: a module that names metrics.json is caught."""
    bad = tmp_path / "bad.py"
    bad.write_text('"""doc naming metrics.json is fine"""\nPATH = "metrics.json"\n')
    monkeypatch.setitem(MODULES, "sidrec.bad", bad)
    assert artifact_literals("sidrec.bad", artifact_names()) == ["sidrec.bad:2: 'metrics.json'"]


def test_every_stage_file_is_declared_once():
    from sidrec.layout import STAGES

    files = [f for stage in STAGES for f in stage.files]
    assert len(files) == len(set(files))
    assert [s.name for s in STAGES] == ["data", "emb", "sid", "model"]


def test_the_layout_is_light():
    """The CLI, reports and serving import it for names: no torch, no numpy."""
    assert third_party("sidrec.layout") <= {"__future__", "dataclasses", "hashlib", "json", "pathlib"}
    assert sidrec_imports("sidrec.layout") <= {"sidrec.errors"}
