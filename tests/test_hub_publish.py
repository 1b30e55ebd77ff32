"""Publish -> download -> load -> predict through the real huggingface_hub client and a local Hub server.

`huggingface_hub` reads HF_ENDPOINT (and HF_HUB_OFFLINE, HF_HOME) when it is imported, and this test
process already runs offline (conftest), so the client side runs in subprocesses whose environment
points at the server on 127.0.0.1. No mocks: every upload and download is real HTTP.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hub_server import HubServer, build_tiny_checkpoints

pytestmark = pytest.mark.slow

FAKE_TOKEN = "hf_fakeTokenForTheLocalServer0123"
CLASSIFIER_REPO = "mimir-tests/mimir-tiny"
PRETRAINING_REPO = "mimir-tests/mimir-tiny-pretrain"
LOGIN_CACHE_REPO = "mimir-tests/mimir-tiny-pretrain-login"
TESTS_DIR = Path(__file__).resolve().parent

# Runs with HF_ENDPOINT set: publishes both checkpoints, then loads them back with stock transformers.
ONLINE_CLIENT = textwrap.dedent(
    r"""
    import json, os, sys, traceback
    sys.path.insert(0, os.environ["TESTS_DIR"])
    args = json.loads(sys.argv[1])
    results = {}

    def step(name):
        def wrap(fn):
            try:
                results[name] = {"ok": True, "value": fn()}
            except BaseException:
                results[name] = {"ok": False, "error": traceback.format_exc()}
            return fn
        return wrap

    import torch
    from huggingface_hub import HfApi, ModelCard, constants, hf_hub_download
    from transformers import AutoImageProcessor, AutoModel, AutoModelForImageClassification, pipeline
    from hub_server import tiny_images
    from mimir_hf.evaluation import RobustnessReport
    from mimir_hf.hub import PublishError, publish_checkpoint, validate_model_card

    assert constants.ENDPOINT == os.environ["HF_ENDPOINT"] and not constants.HF_HUB_OFFLINE
    reference = json.load(open(args["reference"]))
    api = HfApi()

    @step("publish_pretraining")
    def _():
        r = publish_checkpoint(args["pretraining"], args["pretraining_repo"], kind="pretraining")
        return {"files": r.files, "commit": r.commit_oid, "url": r.repo_url}

    @step("publish_classifier")
    def _():
        r = publish_checkpoint(args["classifier"], args["classifier_repo"], base_model=args["pretraining_repo"])
        return {"files": r.files, "commit": r.commit_oid, "url": r.repo_url}

    @step("republish_is_idempotent")
    def _():
        r = publish_checkpoint(args["classifier"], args["classifier_repo"], base_model=args["pretraining_repo"])
        return {"commit": r.commit_oid}

    @step("repo_files")
    def _():
        return sorted(api.list_repo_files(args["classifier_repo"]))

    @step("card_round_trip")
    def _():
        card = ModelCard.load(args["classifier_repo"])
        report = json.load(open(hf_hub_download(args["classifier_repo"], "robustness.json")))
        validate_model_card(str(card), report=RobustnessReport.from_dict(report), base_model=args["pretraining_repo"])
        info = api.model_info(args["classifier_repo"])
        return {
            "values": {r.metric_config: r.metric_value for r in card.data.eval_results},
            "report_values": {k: v["accuracy"] for k, v in report["attacks"].items()},
            "base_model": card.data.base_model,
            "info_tags": info.tags,
            "info_pipeline_tag": info.pipeline_tag,
            "autoattack_log": open(hf_hub_download(args["classifier_repo"], "autoattack.log")).read(),
            "recipe_config": open(hf_hub_download(args["classifier_repo"], "recipe_config.yaml")).read(),
        }

    def check_classifier(repo):
        processor = AutoImageProcessor.from_pretrained(repo)
        inputs = processor(images=tiny_images(), return_tensors="pt")
        model = AutoModelForImageClassification.from_pretrained(repo).eval()
        with torch.no_grad():
            logits = model(**inputs).logits
        encoder = AutoModel.from_pretrained(repo).eval()
        with torch.no_grad():
            hidden = encoder(**inputs).last_hidden_state
        classify = pipeline("image-classification", model=repo)
        top = [out[0]["label"] for out in classify(tiny_images())]
        return {
            "model_class": type(model).__name__,
            "encoder_class": type(encoder).__name__,
            "logits_max_diff": (logits - torch.tensor(reference["logits"])).abs().max().item(),
            "hidden_max_diff": (hidden - torch.tensor(reference["last_hidden_state"])).abs().max().item(),
            "pipeline_labels": top,
            "reference_labels": reference["labels"],
            "pixel_range": [inputs["pixel_values"].min().item(), inputs["pixel_values"].max().item()],
        }

    @step("load_classifier")
    def _():
        return check_classifier(args["classifier_repo"])

    @step("load_pretraining")
    def _():
        encoder = AutoModel.from_pretrained(args["pretraining_repo"], mask_ratio=0.0)
        config = json.load(open(hf_hub_download(args["pretraining_repo"], "config.json")))
        return {"class": type(encoder).__name__, "attack_epsilon": getattr(encoder.config, "attack_epsilon", None),
                "architectures": config["architectures"]}

    @step("eval_results_round_trip")
    def _():
        # the same classifier, its report now naming a Hub dataset: the .eval_results files go up with it
        import shutil
        from huggingface_hub import parse_eval_result_entries
        import yaml
        folder = os.path.join(os.path.dirname(args["out"]), "classifier-hub-dataset")
        shutil.copytree(args["classifier"], folder)
        report_path = os.path.join(folder, "robustness.json")
        report = json.load(open(report_path))
        report["dataset"] = "uoft-cs/cifar10"
        json.dump(report, open(report_path, "w"))
        repo = args["classifier_repo"] + "-evals"
        first = publish_checkpoint(folder, repo)
        def read_back():
            files = sorted(f for f in api.list_repo_files(repo) if f.startswith(".eval_results/"))
            entries = {}
            for name in files:
                (entry,) = parse_eval_result_entries(yaml.safe_load(open(hf_hub_download(repo, name)).read()))
                entries[name] = {"dataset_id": entry.dataset_id, "task_id": entry.task_id, "value": entry.value,
                                 "notes": entry.notes, "source_url": entry.source_url}
            return entries
        before = read_back()
        del report["attacks"]["pgd-100"]  # a new report without one attack: its file must go
        json.dump(report, open(report_path, "w"))
        second = publish_checkpoint(folder, repo)
        return {"report": report, "first_files": first.files, "before": before, "after": read_back(),
                "deleted": second.deleted, "endpoint": os.environ["HF_ENDPOINT"]}

    @step("stale_weights_removed")
    def _():
        api.upload_file(path_or_fileobj=b"old shard", path_in_repo="model-00001-of-00002.safetensors",
                        repo_id=args["pretraining_repo"])
        r = publish_checkpoint(args["pretraining"], args["pretraining_repo"], kind="pretraining")
        return {"deleted": r.deleted, "files": sorted(api.list_repo_files(args["pretraining_repo"]))}

    @step("login_cache_token")
    def _():
        # No HF_TOKEN: the token must come from the login cache ($HF_HOME/token).
        token = os.environ.pop("HF_TOKEN")
        with open(constants.HF_TOKEN_PATH, "w") as f:
            f.write(token)
        try:
            r = publish_checkpoint(args["pretraining"], args["login_repo"], kind="pretraining")
        finally:
            os.remove(constants.HF_TOKEN_PATH)
            os.environ["HF_TOKEN"] = token
        return {"commit": r.commit_oid}

    @step("token_not_in_errors")
    def _():
        # A careless server that quotes the request's Authorization header in its error message.
        try:
            publish_checkpoint(args["classifier"], "mimir-tests/rejected", endpoint=args["rejecting_endpoint"])
        except PublishError as error:
            text = "".join(traceback.format_exception(error))
            return {"leaked": os.environ["HF_TOKEN"] in text, "message": str(error)[:300]}
        raise AssertionError("the rejecting server accepted the upload")

    json.dump(results, open(args["out"], "w"))
    """
)

# Runs with HF_HUB_OFFLINE=1 after the server has stopped: everything must come from the cache.
OFFLINE_CLIENT = textwrap.dedent(
    r"""
    import json, os, sys
    sys.path.insert(0, os.environ["TESTS_DIR"])
    args = json.loads(sys.argv[1])
    import torch
    from huggingface_hub import constants
    from transformers import AutoImageProcessor, AutoModel, AutoModelForImageClassification, pipeline
    from hub_server import tiny_images

    assert constants.HF_HUB_OFFLINE
    reference = json.load(open(args["reference"]))
    repo = args["classifier_repo"]
    inputs = AutoImageProcessor.from_pretrained(repo)(images=tiny_images(), return_tensors="pt")
    with torch.no_grad():
        logits = AutoModelForImageClassification.from_pretrained(repo).eval()(**inputs).logits
        hidden = AutoModel.from_pretrained(repo).eval()(**inputs).last_hidden_state
    labels = [out[0]["label"] for out in pipeline("image-classification", model=repo)(tiny_images())]
    json.dump({
        "logits_max_diff": (logits - torch.tensor(reference["logits"])).abs().max().item(),
        "hidden_max_diff": (hidden - torch.tensor(reference["last_hidden_state"])).abs().max().item(),
        "pipeline_labels": labels,
    }, open(args["out"], "w"))
    """
)


def _client_env(endpoint: str, hf_home: Path, offline: bool) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        HF_ENDPOINT=endpoint,
        HF_HUB_DISABLE_XET="1",
        HF_HOME=str(hf_home),
        HF_HUB_OFFLINE="1" if offline else "0",
        TRANSFORMERS_OFFLINE="1" if offline else "0",
        HF_DATASETS_OFFLINE="1",
        HF_TOKEN=FAKE_TOKEN,
        HF_HUB_DISABLE_TELEMETRY="1",
        HF_HUB_DISABLE_PROGRESS_BARS="1",
        TESTS_DIR=str(TESTS_DIR),
        OMP_NUM_THREADS="1",
    )
    env.pop("HUGGING_FACE_HUB_TOKEN", None)
    return env


def _run_client(script: str, args: dict, env: dict[str, str]) -> dict:
    completed = subprocess.run(
        [sys.executable, "-c", script, json.dumps(args)], env=env, capture_output=True, text=True, timeout=240
    )
    assert completed.returncode == 0, f"client failed:\n{completed.stdout}\n{completed.stderr[-6000:]}"
    assert FAKE_TOKEN not in completed.stdout + completed.stderr, "the token appeared in the client's output"
    return json.loads(Path(args["out"]).read_text())


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    root = tmp_path_factory.mktemp("hub-e2e")
    checkpoints = build_tiny_checkpoints(root / "checkpoints")
    hf_home = root / "hf_home"
    args = {
        "classifier": str(checkpoints["classifier"]),
        "pretraining": str(checkpoints["pretraining"]),
        "reference": str(checkpoints["reference"]),
        "classifier_repo": CLASSIFIER_REPO,
        "pretraining_repo": PRETRAINING_REPO,
        "login_repo": LOGIN_CACHE_REPO,
    }
    server = HubServer(root / "hub", token=FAKE_TOKEN).start()
    rejecting = HubServer(root / "hub-rejecting", reject_writes=True).start()
    try:
        online = _run_client(
            ONLINE_CLIENT,
            {**args, "rejecting_endpoint": rejecting.url, "out": str(root / "online.json")},
            _client_env(server.url, hf_home, offline=False),
        )
    finally:
        rejecting.stop()
        server.stop()  # the offline client must not be able to reach it
    offline = _run_client(
        OFFLINE_CLIENT, {**args, "out": str(root / "offline.json")}, _client_env(server.url, hf_home, offline=True)
    )
    return {"online": online, "offline": offline, "server": server, "rejecting": rejecting, "checkpoints": checkpoints}


def _ok(results: dict, step: str):
    assert results[step]["ok"], results[step].get("error")
    return results[step]["value"]


def test_one_commit_holds_everything(published):
    server = published["server"]
    expected = {
        "README.md", "model.safetensors", "config.json", "preprocessor_config.json",
        "robustness.json", "autoattack.log", "recipe_config.yaml",
        "accuracy_vs_epsilon.png", "per_sample.npz", "robustness_table.txt",
    }
    value = _ok(published["online"], "publish_classifier")
    assert set(value["files"]) == expected
    assert set(_ok(published["online"], "repo_files")) == expected | {".gitattributes"}
    classifier_commits = [c for c in server.commits if c[0] == CLASSIFIER_REPO]
    assert classifier_commits[0][2] == sorted(expected)  # every file arrived in the first commit
    assert classifier_commits[0][1] == value["commit"]
    # the weights went through the LFS batch API + PUT, not inline in the commit
    assert server.repo_files(CLASSIFIER_REPO)["model.safetensors"]["lfs"] is not None
    paths = [(r.method, r.path) for r in server.requests]
    assert ("POST", f"/{CLASSIFIER_REPO}.git/info/lfs/objects/batch") in paths
    assert server.unhandled == []


def test_republishing_unchanged_files_adds_no_commit(published):
    first = _ok(published["online"], "publish_classifier")["commit"]
    assert _ok(published["online"], "republish_is_idempotent")["commit"] == first


def test_card_round_trip(published):
    value = _ok(published["online"], "card_round_trip")
    assert value["values"] == {k: v for k, v in value["report_values"].items() if "@" not in k}
    assert value["base_model"] == PRETRAINING_REPO
    assert {"mimir", "adversarial-robustness", "vision-transformer"} <= set(value["info_tags"])
    assert value["info_pipeline_tag"] == "image-classification"
    assert "robust accuracy" in value["autoattack_log"]
    assert "hf_this_must_not_leak" not in value["recipe_config"]


def test_from_pretrained_and_pipeline_match_the_model_before_upload(published):
    value = _ok(published["online"], "load_classifier")
    assert value["model_class"] == "BeitForImageClassification"  # the mean-pooled classifier, as the recipes make it
    assert value["encoder_class"] == "BeitModel"
    assert value["logits_max_diff"] < 1e-5
    assert value["hidden_max_diff"] < 1e-5
    assert value["pipeline_labels"] == value["reference_labels"]
    assert 0.0 <= value["pixel_range"][0] and value["pixel_range"][1] <= 1.0  # no normalisation
    pre = _ok(published["online"], "load_pretraining")
    assert pre["class"] == "ViTMAEModel" and abs(pre["attack_epsilon"] - 8 / 255) < 1e-12
    assert pre["architectures"] == ["ViTMAEForPreTraining"]  # rewritten from the subclass' name


def test_eval_results_files_go_through_the_real_client(published):
    value = _ok(published["online"], "eval_results_round_trip")
    report = value["report"]
    before, after = value["before"], value["after"]
    assert ".eval_results/autoattack-linf-eps8_255.yaml" in value["first_files"]
    # one file per score: clean, each attack at the headline budget (PGD-100 before its removal), worst case
    assert ".eval_results/pgd-100-linf-eps8_255.yaml" in before and ".eval_results/pgd-100-linf-eps8_255.yaml" not in after
    assert value["deleted"] == [".eval_results/pgd-100-linf-eps8_255.yaml"]
    assert set(after) == {".eval_results/clean.yaml", ".eval_results/pgd-20-linf-eps8_255.yaml",
                          ".eval_results/autoattack-linf-eps8_255.yaml", ".eval_results/worst-case-linf-eps8_255.yaml"}
    assert all(e["dataset_id"] == "uoft-cs/cifar10" for e in after.values())
    by_task = {e["task_id"]: e for e in after.values()}
    for name, entry in report["attacks"].items():
        if "@" in name:
            assert not any(task.startswith(name.split("@")[0] + "@") for task in by_task)
            continue
        task = "clean" if name == "clean" else f"{name}-linf-eps8_255"
        assert by_task[task]["value"] == entry["accuracy"]  # verbatim from robustness.json
    assert by_task["worst-case-linf-eps8_255"]["value"] == report["worst_case"]["accuracy"]
    assert "L∞ ε = 8/255" in by_task["autoattack-linf-eps8_255"]["notes"]
    assert by_task["clean"]["source_url"] == f"{value['endpoint']}/{CLASSIFIER_REPO}-evals/blob/main/robustness.json"


def test_stale_weight_files_are_removed_in_the_same_commit(published):
    value = _ok(published["online"], "stale_weights_removed")
    assert value["deleted"] == ["model-00001-of-00002.safetensors"]
    assert "model-00001-of-00002.safetensors" not in value["files"] and "model.safetensors" in value["files"]


def test_token_from_login_cache(published):
    assert _ok(published["online"], "login_cache_token")["commit"]


def test_token_never_appears_in_errors(published):
    value = _ok(published["online"], "token_not_in_errors")
    assert "403" in value["message"] or "rejected" in value["message"]
    assert value["leaked"] is False
    # the careless server did receive the token: the scrubbing is what kept it out
    assert any(r.authorized for r in published["rejecting"].requests)


def test_offline_loading_from_the_cache_after_the_server_stops(published):
    offline = published["offline"]
    assert offline["logits_max_diff"] < 1e-5
    assert offline["hidden_max_diff"] < 1e-5
    reference = json.loads(published["checkpoints"]["reference"].read_text())
    assert offline["pipeline_labels"] == reference["labels"]
