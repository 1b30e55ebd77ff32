"""A small Hugging Face Hub-compatible HTTP server for tests (standard library only).

It implements the part of the Hub's HTTP API that `huggingface_hub` uses to create a repo, upload
files in one commit (regular files inline, large/binary files through the Git LFS "basic" transfer)
and download them again (`hf_hub_download`, `snapshot_download`, `from_pretrained`, `pipeline`):

- ``POST /api/repos/create``                                   (409 when the repo exists)
- ``POST /api/{type}s/{repo}/preupload/{rev}``                 (regular vs LFS upload mode)
- ``POST /api/{type}s/{repo}/commit/{rev}``                    (NDJSON: header/file/lfsFile/deletedFile/deletedFolder)
- ``HEAD|GET /[{type}s/]{repo}/resolve/{rev}/{path}``          (X-Repo-Commit, ETag, Range; X-Error-Code on 404)
- ``GET /api/{type}s/{repo}[/revision/{rev}]``                 (repo info with siblings and cardData)
- ``GET /api/{type}s/{repo}/tree/{rev}[/{path}]``              (tree listing, ``recursive`` supported)
- ``POST /api/validate-yaml``                                  (YAML syntax + model-index structure only)
- ``POST /[{type}s/]{repo}.git/info/lfs/objects/batch``        (LFS batch API, upload operation)
- ``PUT /lfs-upload/{oid}`` and ``POST /lfs-verify``           (LFS object upload and verification)

It is test infrastructure, not a Hub: no Xet storage, no pull requests, no real authentication (an
optional single accepted token), no real metadata validation. Repos are stored under a directory
(blobs content-addressed by sha256, one JSON state file per repo), so a server restarted on the same
directory serves the same repos.

Use it as a context manager::

    with HubServer(tmp_path / "hub") as server:
        env = {"HF_ENDPOINT": server.url, "HF_HUB_DISABLE_XET": "1", ...}

or from the command line: ``python tests/hub_server.py --root /tmp/hub --port 8080``.
"""

from __future__ import annotations

import base64
import datetime as _dt
import hashlib
import json
import re
import tempfile
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

import yaml

__all__ = ["HubServer", "HubError"]

DEFAULT_USER = "mimir-tester"
REPO_TYPES = ("model", "dataset", "space")
# What the Hub's default .gitattributes sends to LFS (a subset is enough for model repos).
LFS_SUFFIXES = (
    ".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".msgpack", ".onnx", ".npz", ".npy",
    ".pkl", ".pickle", ".zip", ".tar", ".gz", ".tgz", ".arrow", ".parquet", ".model", ".gguf",
)
LFS_SIZE_THRESHOLD = 10 * 1024 * 1024
GITATTRIBUTES = "".join(f"*{suffix} filter=lfs diff=lfs merge=lfs -text\n" for suffix in LFS_SUFFIXES).encode()


def git_blob_oid(content: bytes) -> str:
    """The git object id of a blob (sha1 of ``"blob <size>\\0" + content``)."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")


class HubError(Exception):
    """An HTTP error answered to the client, with the Hub's ``X-Error-Code`` when it has one."""

    def __init__(self, status: int, message: str, error_code: str | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_code = error_code


@dataclass
class RequestRecord:
    method: str
    path: str
    status: int
    authorized: bool


class _Store:
    """Repos, commits and blobs on disk; every access goes through one lock."""

    def __init__(self, root: Path):
        self.root = root
        self.blobs = root / "blobs"
        self.repos = root / "repos"
        self.blobs.mkdir(parents=True, exist_ok=True)
        self.repos.mkdir(parents=True, exist_ok=True)
        self.lock = threading.RLock()

    # -- blobs ---------------------------------------------------------------------------------
    def put_blob(self, content: bytes) -> str:
        sha256 = hashlib.sha256(content).hexdigest()
        path = self.blobs / sha256
        if not path.exists():
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(content)
            tmp.replace(path)
        return sha256

    def has_blob(self, sha256: str) -> bool:
        return re.fullmatch(r"[0-9a-f]{64}", sha256) is not None and (self.blobs / sha256).is_file()

    def blob_path(self, sha256: str) -> Path:
        return self.blobs / sha256

    # -- repos ---------------------------------------------------------------------------------
    def _state_path(self, repo_type: str, repo_id: str) -> Path:
        return self.repos / f"{repo_type}s" / repo_id / "state.json"

    def load(self, repo_type: str, repo_id: str) -> dict[str, Any]:
        path = self._state_path(repo_type, repo_id)
        if not path.is_file():
            raise HubError(404, f"Repository Not Found for url: {repo_type}s/{repo_id}.", "RepoNotFound")
        return json.loads(path.read_text())

    def save(self, state: dict[str, Any]) -> None:
        path = self._state_path(state["type"], state["id"])
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=1))
        tmp.replace(path)

    def exists(self, repo_type: str, repo_id: str) -> bool:
        return self._state_path(repo_type, repo_id).is_file()

    def create(self, repo_type: str, repo_id: str, private: bool) -> dict[str, Any]:
        sha256 = self.put_blob(GITATTRIBUTES)
        files = {".gitattributes": {"oid": git_blob_oid(GITATTRIBUTES), "size": len(GITATTRIBUTES), "sha256": sha256, "lfs": None}}
        state = {"id": repo_id, "type": repo_type, "private": private, "createdAt": _now(), "refs": {}, "commits": {}}
        oid = self._add_commit(state, None, "initial commit", "", files)
        state["refs"]["main"] = oid
        self.save(state)
        return state

    @staticmethod
    def _add_commit(state, parent, title, description, files) -> str:
        payload = json.dumps([parent, title, description, sorted((p, f["oid"]) for p, f in files.items()), _now(), len(state["commits"])])
        oid = hashlib.sha1(payload.encode()).hexdigest()
        state["commits"][oid] = {"parent": parent, "title": title, "description": description, "date": _now(), "files": files}
        return oid

    @staticmethod
    def resolve_revision(state: dict[str, Any], revision: str) -> str:
        if revision in state["refs"]:
            return state["refs"][revision]
        if revision in state["commits"]:
            return revision
        if re.fullmatch(r"[0-9a-f]{7,39}", revision):
            matches = [oid for oid in state["commits"] if oid.startswith(revision)]
            if len(matches) == 1:
                return matches[0]
        raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")

    def commit(self, repo_type, repo_id, revision, header, additions, deletions, folder_deletions) -> tuple[str, dict]:
        with self.lock:
            state = self.load(repo_type, repo_id)
            if revision not in state["refs"]:
                if revision in state["commits"]:
                    raise HubError(400, "Can only commit on a branch.", None)
                raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
            head = state["refs"][revision]
            parent_commit = header.get("parentCommit")
            if parent_commit and not head.startswith(parent_commit):
                raise HubError(412, f"A commit has happened since. Parent commit {parent_commit} is not the head {head}.")
            files = dict(state["commits"][head]["files"])
            for path in deletions:
                if path not in files:
                    raise HubError(404, f"A file with this name doesn't exist: {path}", "EntryNotFound")
                del files[path]
            for folder in folder_deletions:
                prefix = folder.rstrip("/") + "/"
                doomed = [p for p in files if p.startswith(prefix)]
                if not doomed:
                    raise HubError(404, f"A folder with this name doesn't exist: {folder}", "EntryNotFound")
                for p in doomed:
                    del files[p]
            files.update(additions)
            oid = self._add_commit(state, head, header.get("summary") or "", header.get("description") or "", files)
            state["refs"][revision] = oid
            self.save(state)
            return oid, state


def _parse_front_matter(text: str) -> dict[str, Any] | None:
    match = re.match(r"^\s*---[ \t]*\r?\n(.*?\r?\n)?---[ \t]*(\r?\n|$)", text, re.DOTALL)
    if not match:
        return None
    data = yaml.safe_load(match.group(1) or "")
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError("metadata block must be a mapping")
    return data


def _model_index_errors(model_index: Any) -> list[str]:
    """Structural checks of `model-index` (the real Hub checks much more: ids, task types, ...)."""
    if not isinstance(model_index, list) or not model_index:
        return ['"model-index" must be a non-empty array']
    errors = []
    for i, entry in enumerate(model_index):
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            errors.append(f'"model-index[{i}].name" is required and must be a string')
            continue
        results = entry.get("results")
        if not isinstance(results, list):
            errors.append(f'"model-index[{i}].results" must be an array')
            continue
        for j, result in enumerate(results):
            where = f"model-index[{i}].results[{j}]"
            if not isinstance(result, dict):
                errors.append(f'"{where}" must be an object')
                continue
            if not isinstance(result.get("task"), dict) or not isinstance(result["task"].get("type"), str):
                errors.append(f'"{where}.task.type" is required')
            dataset = result.get("dataset")
            if not isinstance(dataset, dict) or not all(isinstance(dataset.get(k), str) for k in ("type", "name")):
                errors.append(f'"{where}.dataset" needs string "type" and "name"')
            metrics = result.get("metrics")
            if not isinstance(metrics, list) or not metrics:
                errors.append(f'"{where}.metrics" must be a non-empty array')
                continue
            for k, metric in enumerate(metrics):
                if not isinstance(metric, dict) or not isinstance(metric.get("type"), str) or "value" not in metric:
                    errors.append(f'"{where}.metrics[{k}]" needs "type" and "value"')
    return errors


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: "_HTTPServer"

    # ----------------------------------------------------------------------------------- plumbing
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet by default
        if self.server.hub.verbose:
            super().log_message(format, *args)

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _json_body(self) -> Any:
        body = self._read_body()
        try:
            return json.loads(body or b"{}")
        except json.JSONDecodeError as error:
            raise HubError(400, f"Invalid JSON body: {error}") from None

    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None, content_type="application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)
        self._status = status

    def _send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None, content_type="application/json") -> None:
        self._send(status, json.dumps(payload).encode(), headers, content_type)

    def _send_error(self, error: HubError, extra_headers: dict[str, str] | None = None) -> None:
        headers = {"X-Error-Message": error.message, **(extra_headers or {})}
        if error.error_code:
            headers["X-Error-Code"] = error.error_code
        self._send_json(error.status, {"error": error.message}, headers)

    def _authorized(self) -> bool:
        return self.headers.get("Authorization", "").startswith("Bearer ")

    def _require_write_token(self) -> None:
        hub = self.server.hub
        auth = self.headers.get("Authorization", "")
        if not auth.startswith("Bearer ") or not auth[len("Bearer "):].strip():
            raise HubError(401, "Invalid credentials in Authorization header: a token is required to write.")
        if hub.token is not None and auth[len("Bearer "):] != hub.token:
            raise HubError(401, "Invalid credentials in Authorization header.")
        if hub.reject_writes:
            # Test hook: a server that answers with an error quoting the request's credentials.
            raise HubError(403, f"Writes are rejected by this test server (received {auth!r}).")

    def _dispatch(self) -> None:
        self._status = 0
        hub = self.server.hub
        split = urlsplit(self.path)
        self.query = {k: v[-1] for k, v in parse_qs(split.query).items()}
        segments = [unquote(s) for s in split.path.strip("/").split("/")] if split.path.strip("/") else []
        try:
            handled = self._route(self.command, segments)
            if not handled:
                hub.unhandled.append(f"{self.command} {self.path}")
                raise HubError(404, f"Not implemented by the test Hub server: {self.command} {split.path}")
        except HubError as error:
            if not self._status:
                self._send_error(error, getattr(error, "headers", None))
        except (ConnectionError, TimeoutError):
            return
        except Exception as error:  # pragma: no cover - a server bug must be visible to the test
            hub.unhandled.append(f"{self.command} {self.path}: {type(error).__name__}: {error}")
            if not self._status:
                self._send_error(HubError(500, f"Test server error: {type(error).__name__}: {error}"))
        finally:
            hub.requests.append(RequestRecord(self.command, split.path, self._status, self._authorized()))

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = _dispatch

    # ------------------------------------------------------------------------------------ routing
    def _route(self, method: str, s: list[str]) -> bool:
        if s[:1] == ["api"]:
            return self._route_api(method, s[1:])
        if len(s) == 2 and s[0] == "lfs-upload" and method == "PUT":
            self._lfs_put(s[1])
            return True
        if s == ["lfs-verify"] and method == "POST":
            self._lfs_verify()
            return True
        repo_type = "model"
        if s and s[0] in ("datasets", "spaces"):
            repo_type, s = s[0][:-1], s[1:]
        if "resolve" in s[1:3] and method in ("GET", "HEAD"):
            at = s.index("resolve", 1)
            if len(s) < at + 3:
                raise HubError(400, "Expected /{repo}/resolve/{revision}/{path}.")
            self._resolve(repo_type, "/".join(s[:at]), s[at + 1], "/".join(s[at + 2 :]))
            return True
        if len(s) >= 5 and s[-4:] == ["info", "lfs", "objects", "batch"] and s[-5].endswith(".git") and method == "POST":
            self._lfs_batch(repo_type, "/".join([*s[:-5], s[-5][: -len(".git")]]))
            return True
        return False

    def _route_api(self, method: str, s: list[str]) -> bool:
        if s == ["repos", "create"] and method == "POST":
            self._create_repo()
            return True
        if s == ["validate-yaml"] and method == "POST":
            self._validate_yaml()
            return True
        if s == ["agent-harnesses"] and method == "GET":  # user-agent telemetry registry: answer "none known"
            self._send_json(200, {"standardEnvVars": [], "harnesses": {}})
            return True
        if s == ["whoami-v2"] and method == "GET":
            self._send_json(200, {"type": "user", "name": DEFAULT_USER, "orgs": [], "auth": {}})
            return True
        if not s or s[0] not in ("models", "datasets", "spaces") or len(s) < 3:
            return False
        repo_type = s[0][:-1]
        repo_id = f"{s[1]}/{s[2]}"
        rest = s[3:]
        if not rest and method == "GET":
            self._repo_info(repo_type, repo_id, "main")
        elif len(rest) == 2 and rest[0] == "revision" and method == "GET":
            self._repo_info(repo_type, repo_id, rest[1])
        elif len(rest) == 2 and rest[0] == "preupload" and method == "POST":
            self._preupload(repo_type, repo_id, rest[1])
        elif len(rest) == 2 and rest[0] == "commit" and method == "POST":
            self._commit(repo_type, repo_id, rest[1])
        elif len(rest) >= 2 and rest[0] == "tree" and method == "GET":
            self._tree(repo_type, repo_id, rest[1], "/".join(rest[2:]))
        else:
            return False
        return True

    # ----------------------------------------------------------------------------------- handlers
    def _repo_url(self, repo_type: str, repo_id: str) -> str:
        prefix = "" if repo_type == "model" else f"{repo_type}s/"
        return f"{self.server.hub.url}/{prefix}{repo_id}"

    def _create_repo(self) -> None:
        self._require_write_token()
        body = self._json_body()
        name = body.get("name")
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}", name):
            raise HubError(400, f"Invalid repo name: {name!r}")
        namespace = body.get("organization") or DEFAULT_USER
        repo_type = body.get("type") or "model"
        if repo_type not in REPO_TYPES:
            raise HubError(400, f"Invalid repo type: {repo_type!r}")
        repo_id = f"{namespace}/{name}"
        private = body.get("visibility") == "private" or bool(body.get("private"))
        store = self.server.hub.store
        with store.lock:
            if store.exists(repo_type, repo_id):
                message = f"You already created this {repo_type} repo: {repo_id}"
                self._send_json(409, {"error": message, "url": self._repo_url(repo_type, repo_id)}, {"X-Error-Message": message})
                return
            store.create(repo_type, repo_id, private)
        self._send_json(200, {"url": self._repo_url(repo_type, repo_id), "name": repo_id, "id": repo_id})

    def _state_and_commit(self, repo_type: str, repo_id: str, revision: str) -> tuple[dict, str]:
        store = self.server.hub.store
        with store.lock:
            state = store.load(repo_type, repo_id)
            return state, store.resolve_revision(state, revision)

    def _preupload(self, repo_type: str, repo_id: str, revision: str) -> None:
        self._require_write_token()
        body = self._json_body()
        state, commit = self._state_and_commit(repo_type, repo_id, revision)
        existing = state["commits"][commit]["files"]
        answers = []
        for entry in body.get("files", []):
            path, size = entry["path"], int(entry.get("size", 0))
            sample = base64.b64decode(entry.get("sample", ""))
            lfs = path.endswith(LFS_SUFFIXES) or size > LFS_SIZE_THRESHOLD or b"\0" in sample
            known = existing.get(path)
            oid = None
            if known is not None:
                oid = known["lfs"]["oid"] if known["lfs"] else known["oid"]
            answers.append({"path": path, "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False, "oid": oid})
        self._send_json(200, {"files": answers, "commitOid": commit})

    def _commit(self, repo_type: str, repo_id: str, revision: str) -> None:
        self._require_write_token()
        if self.query.get("create_pr") in ("1", "true", "True"):
            raise HubError(501, "Pull requests are not supported by the test Hub server.")
        store = self.server.hub.store
        lines = [line for line in self._read_body().splitlines() if line.strip()]
        header: dict[str, Any] = {}
        additions: dict[str, dict] = {}
        deletions: list[str] = []
        folder_deletions: list[str] = []
        for line in lines:
            try:
                item = json.loads(line)
                key, value = item["key"], item["value"]
            except (json.JSONDecodeError, KeyError, TypeError):
                raise HubError(400, f"Malformed NDJSON line in commit payload: {line[:200]!r}") from None
            if key == "header":
                header = value
            elif key == "file":
                if value.get("encoding", "base64") != "base64":
                    raise HubError(400, f"Unsupported encoding {value.get('encoding')!r}")
                content = base64.b64decode(value["content"])
                sha256 = store.put_blob(content)
                additions[self._check_path(value["path"])] = {"oid": git_blob_oid(content), "size": len(content), "sha256": sha256, "lfs": None}
            elif key == "lfsFile":
                sha256, path = value["oid"], self._check_path(value["path"])
                if value.get("algo", "sha256") != "sha256":
                    raise HubError(400, f"Unsupported LFS hash algorithm {value.get('algo')!r}")
                if not store.has_blob(sha256):
                    raise HubError(422, f"LFS file {path} (oid {sha256}) was not uploaded before the commit.")
                size = store.blob_path(sha256).stat().st_size
                if "size" in value and int(value["size"]) != size:
                    raise HubError(422, f"LFS file {path}: size {value['size']} does not match the uploaded {size}.")
                pointer = lfs_pointer(sha256, size)
                additions[path] = {"oid": git_blob_oid(pointer), "size": size, "sha256": sha256, "lfs": {"oid": sha256, "size": size, "pointerSize": len(pointer)}}
            elif key == "deletedFile":
                deletions.append(value["path"])
            elif key == "deletedFolder":
                folder_deletions.append(value["path"])
            else:
                raise HubError(400, f"Unknown commit operation {key!r}")
        if not header:
            raise HubError(400, "The commit payload must start with a header line.")
        if not header.get("summary"):
            raise HubError(400, "A commit summary is required.")
        oid, _ = store.commit(repo_type, repo_id, revision, header, additions, deletions, folder_deletions)
        self.server.hub.commits.append((repo_id, oid, sorted(additions), header.get("summary")))
        self._send_json(200, {"success": True, "commitOid": oid, "commitUrl": f"{self._repo_url(repo_type, repo_id)}/commit/{oid}", "pullRequestUrl": None})

    @staticmethod
    def _check_path(path: str) -> str:
        parts = PurePosixPath(path).parts
        if not path or path.startswith("/") or ".." in parts or ".git" in parts:
            raise HubError(400, f"Invalid path in repo: {path!r}")
        return path

    def _resolve(self, repo_type: str, repo_id: str, revision: str, path: str) -> None:
        store = self.server.hub.store
        try:
            state, commit = self._state_and_commit(repo_type, repo_id, revision)
        except HubError as error:
            raise error
        entry = state["commits"][commit]["files"].get(path)
        if entry is None:
            error = HubError(404, f"Entry not found: {path}", "EntryNotFound")
            error.headers = {"X-Repo-Commit": commit}  # type: ignore[attr-defined]
            raise error
        blob = store.blob_path(entry["sha256"])
        size = blob.stat().st_size
        etag = entry["lfs"]["oid"] if entry["lfs"] else entry["oid"]
        headers = {"X-Repo-Commit": commit, "ETag": f'"{etag}"', "Accept-Ranges": "bytes", "Cache-Control": "private, max-age=0"}
        if entry["lfs"]:
            headers.update({"X-Linked-Etag": f'"{etag}"', "X-Linked-Size": str(size)})
        start, end, status = 0, size, 200
        match = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", "").strip())
        if match and self.command == "GET":
            start = int(match.group(1))
            end = min(size, int(match.group(2)) + 1) if match.group(2) else size
            if start >= size and size > 0:
                raise HubError(416, "Requested range not satisfiable")
            status = 206
            headers["Content-Range"] = f"bytes {start}-{max(start, end - 1)}/{size}"
        with open(blob, "rb") as handle:
            handle.seek(start)
            data = handle.read(end - start) if self.command == "GET" else b""
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(end - start))
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        if self.command == "GET":
            self.wfile.write(data)
        self._status = status

    def _entries(self, files: dict[str, dict], root: str, recursive: bool) -> list[dict]:
        prefix = root.strip("/") + "/" if root.strip("/") else ""
        out_files, folders = [], set()
        for path in sorted(files):
            if not path.startswith(prefix):
                continue
            rel = path[len(prefix):]
            parts = rel.split("/")
            for depth in range(1, len(parts)):
                if recursive or depth == 1:
                    folders.add(prefix + "/".join(parts[:depth]))
            if recursive or len(parts) == 1:
                out_files.append(path)
        result = [{"type": "directory", "oid": hashlib.sha1(f.encode()).hexdigest(), "path": f} for f in sorted(folders)]
        for path in out_files:
            entry = files[path]
            item = {"type": "file", "oid": entry["oid"], "size": entry["size"], "path": path}
            if entry["lfs"]:
                item["lfs"] = dict(entry["lfs"])
            result.append(item)
        return result

    def _tree(self, repo_type: str, repo_id: str, revision: str, path: str) -> None:
        state, commit = self._state_and_commit(repo_type, repo_id, revision)
        files = state["commits"][commit]["files"]
        path = path.strip("/")
        if path and path in files:
            raise HubError(400, f"{path} is a file, not a directory")
        if path and not any(p.startswith(path + "/") for p in files):
            raise HubError(404, f"Entry not found: {path}", "EntryNotFound")
        recursive = self.query.get("recursive", "").lower() in ("1", "true")
        self._send_json(200, self._entries(files, path, recursive))

    def _repo_info(self, repo_type: str, repo_id: str, revision: str) -> None:
        store = self.server.hub.store
        state, commit = self._state_and_commit(repo_type, repo_id, revision)
        record = state["commits"][commit]
        files = record["files"]
        siblings = []
        for path in sorted(files):
            entry = files[path]
            sibling: dict[str, Any] = {"rfilename": path, "size": entry["size"], "blobId": entry["oid"]}
            if entry["lfs"]:
                sibling["lfs"] = {"size": entry["size"], "sha256": entry["lfs"]["oid"], "pointerSize": entry["lfs"]["pointerSize"]}
            siblings.append(sibling)
        card: dict[str, Any] = {}
        if "README.md" in files:
            try:
                card = _parse_front_matter(store.blob_path(files["README.md"]["sha256"]).read_text(encoding="utf-8")) or {}
            except (ValueError, yaml.YAMLError, UnicodeDecodeError):
                card = {}
        info: dict[str, Any] = {
            "_id": hashlib.sha1(repo_id.encode()).hexdigest()[:24], "id": repo_id, "author": repo_id.split("/")[0],
            "sha": commit, "private": state["private"], "gated": False, "disabled": False, "downloads": 0, "likes": 0,
            "createdAt": state["createdAt"], "lastModified": record["date"], "tags": list(card.get("tags") or []),
            "siblings": siblings, "cardData": card,
        }
        if repo_type == "model":
            info.update({"library_name": card.get("library_name"), "pipeline_tag": card.get("pipeline_tag")})
            if "model-index" in card:
                info["model-index"] = card["model-index"]
        self._send_json(200, info)

    def _validate_yaml(self) -> None:
        body = self._json_body()
        content = body.get("content", "")
        try:
            data = _parse_front_matter(content)
        except (ValueError, yaml.YAMLError) as error:
            self._send_json(400, {"errors": [{"message": f"Invalid YAML metadata: {error}"}], "warnings": []})
            return
        warnings = [] if data else [{"message": "empty or missing yaml metadata in repo card"}]
        errors = _model_index_errors(data["model-index"]) if data and "model-index" in data else []
        if errors:
            self._send_json(400, {"errors": [{"message": m} for m in errors], "warnings": warnings})
        else:
            self._send_json(200, {"errors": [], "warnings": warnings})

    def _lfs_batch(self, repo_type: str, repo_id: str) -> None:
        self._require_write_token()
        store = self.server.hub.store
        with store.lock:
            store.load(repo_type, repo_id)  # 404 RepoNotFound if missing
        body = self._json_body()
        if body.get("operation") != "upload":
            raise HubError(422, "Only the 'upload' operation is supported by the test Hub server.")
        transfers = body.get("transfers") or ["basic"]
        if "basic" not in transfers:
            raise HubError(422, f"No supported transfer among {transfers}")
        objects = []
        for obj in body.get("objects", []):
            oid, size = obj.get("oid"), obj.get("size")
            if not isinstance(oid, str) or not re.fullmatch(r"[0-9a-f]{64}", oid) or not isinstance(size, int):
                objects.append({"oid": str(oid), "size": int(size or 0), "error": {"code": 422, "message": "Invalid oid or size"}})
            elif store.has_blob(oid):
                objects.append({"oid": oid, "size": size})  # already present: no action
            else:
                base = self.server.hub.url
                objects.append({
                    "oid": oid, "size": size, "authenticated": True,
                    "actions": {
                        "upload": {"href": f"{base}/lfs-upload/{oid}?size={size}"},
                        "verify": {"href": f"{base}/lfs-verify"},
                    },
                })
        self._send_json(200, {"transfer": "basic", "objects": objects}, content_type="application/vnd.git-lfs+json")

    def _lfs_put(self, oid: str) -> None:
        body = self._read_body()
        expected_size = self.query.get("size")
        if expected_size is not None and int(expected_size) != len(body):
            raise HubError(400, f"Uploaded {len(body)} bytes, expected {expected_size}.")
        if hashlib.sha256(body).hexdigest() != oid:
            raise HubError(400, "The uploaded content does not match its sha256 oid.")
        self.server.hub.store.put_blob(body)
        self._send(200, b"")

    def _lfs_verify(self) -> None:
        body = self._json_body()
        store = self.server.hub.store
        oid, size = body.get("oid", ""), body.get("size")
        if not store.has_blob(oid) or store.blob_path(oid).stat().st_size != size:
            raise HubError(404, f"LFS object {oid} is missing or has the wrong size.")
        self._send_json(200, {"success": True})


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    hub: "HubServer"


class HubServer:
    """A Hub-compatible server on 127.0.0.1 running in a background thread.

    Args:
        root: directory for the repos (a fresh temporary directory when None).
        port: 0 picks a free port.
        token: when set, writes need exactly ``Authorization: Bearer <token>``; otherwise any bearer token.
        reject_writes: test hook — answer every write with a 403 whose message quotes the Authorization header
            (a careless server), to check that clients never surface the token.
    """

    def __init__(self, root: str | Path | None = None, *, port: int = 0, token: str | None = None,
                 reject_writes: bool = False, verbose: bool = False):
        self._tmp = None
        if root is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="hub-server-")
            root = self._tmp.name
        self.root = Path(root)
        self.store = _Store(self.root)
        self.token = token
        self.reject_writes = reject_writes
        self.verbose = verbose
        self.requests: list[RequestRecord] = []
        self.unhandled: list[str] = []
        self.commits: list[tuple[str, str, list[str], str]] = []
        self._httpd = _HTTPServer(("127.0.0.1", port), _Handler)
        self._httpd.hub = self
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "HubServer":
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="hub-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(timeout=10)
            self._thread = None
        self._httpd.server_close()

    def __enter__(self) -> "HubServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()

    # -- inspection helpers for tests ----------------------------------------------------------------
    def repo_files(self, repo_id: str, revision: str = "main", repo_type: str = "model") -> dict[str, dict]:
        with self.store.lock:
            state = self.store.load(repo_type, repo_id)
            return state["commits"][self.store.resolve_revision(state, revision)]["files"]

    def read_file(self, repo_id: str, path: str, revision: str = "main", repo_type: str = "model") -> bytes:
        entry = self.repo_files(repo_id, revision, repo_type)[path]
        return self.store.blob_path(entry["sha256"]).read_bytes()

    def commit_count(self, repo_id: str, repo_type: str = "model") -> int:
        with self.store.lock:
            return len(self.store.load(repo_type, repo_id)["commits"])


def resolve_url(server_url: str, repo_id: str, path: str, revision: str = "main") -> str:
    return f"{server_url}/{repo_id}/resolve/{quote(revision, safe='')}/{quote(path)}"


if __name__ == "__main__":  # pragma: no cover - manual use
    import argparse
    import time

    parser = argparse.ArgumentParser(description="Run the test Hub server on 127.0.0.1.")
    parser.add_argument("--root", default=None, help="directory for the repos (default: a temporary one)")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args()
    with HubServer(args.root, port=args.port, verbose=args.verbose) as hub:
        print(f"export HF_ENDPOINT={hub.url} HF_HUB_DISABLE_XET=1  # repos in {hub.root}", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


# ---------------------------------------------------------------------------------------------------
# Test data: tiny stock checkpoints (built in memory, saved with save_pretrained) and a report of chosen
# per-sample outcomes, written by the evaluator's writer. These numbers are fixtures, not measured results.
# ---------------------------------------------------------------------------------------------------

TINY_LABELS = {0: "zero", 1: "one", 2: "two"}


def tiny_images(n: int = 4, size: int = 16):
    """Deterministic RGB PIL images (the same in every process)."""
    import numpy as np
    from PIL import Image

    pixels = np.random.RandomState(1234).randint(0, 256, size=(n, size, size, 3), dtype=np.uint8)
    return [Image.fromarray(p) for p in pixels]


def tiny_report(model_dir: str | Path, epsilon: float = 8 / 255, weights_fingerprint: str | None = None):
    """A `RobustnessReport` of 64 images with fixed accuracies (clean, PGD-20/100, AutoAttack, a PGD-20 sweep)."""
    from evaluation_folders import measured_report

    from mimir_hf.evaluation import AttackSettings, Check

    return measured_report(
        {"clean": 0.796875, "pgd-20": 0.421875, "pgd-100": 0.40625, "autoattack": 0.390625,
         "pgd-20@eps=16/255": 0.125, "pgd-20@eps=255/255": 0.0},
        num_samples=64, settings=AttackSettings(epsilon=epsilon), model=str(model_dir),
        checks=[Check("accuracy_decreases_with_epsilon", True, "0.797 > 0.422 > 0.125 > 0.0")],
        weights_fingerprint=weights_fingerprint,
    )


def build_tiny_checkpoints(root: str | Path, pooling: str = "mean") -> dict[str, Path]:
    """Tiny checkpoints made the way the quickstart recipes make them: a `MimirForPreTraining`
    checkpoint (hidden 32, 2 layers, 16x16, patch 4), converted by `mae_to_classifier` into a stock
    classifier (`BeitForImageClassification` with `pooling="mean"`, `ViTForImageClassification` with
    `"cls"`), each saved with the image processor the recipes save
    (`make_image_processor`) and a recipe_config.yaml; the classifier also gets robustness.json +
    autoattack.log. Writes `reference.json` with the outputs before upload."""
    import torch

    from mimir_hf.data import make_image_processor
    from mimir_hf.finetuning import mae_to_classifier
    from mimir_hf.modeling import MimirForPreTraining, mimir_config

    root = Path(root)
    classifier_dir, pretraining_dir = root / "classifier", root / "pretraining"
    processor = make_image_processor(16)

    torch.manual_seed(0)
    pretraining = MimirForPreTraining(
        mimir_config("vit-t", 16, patch_size=4, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, decoder_hidden_size=16, decoder_num_hidden_layers=1,
                     decoder_num_attention_heads=2, decoder_intermediate_size=32)
    )
    pretraining.save_pretrained(pretraining_dir)  # records architectures ["MimirForPreTraining"], as the recipe does
    processor.save_pretrained(pretraining_dir)
    (pretraining_dir / "recipe_config.yaml").write_text("dataset: builtin:digits\nimage_size: 16\nmask_ratio: 0.75\n")

    model = mae_to_classifier(
        pretraining_dir, id2label=TINY_LABELS, pooling=pooling, generator=torch.Generator().manual_seed(0)
    ).eval()
    model.save_pretrained(classifier_dir)
    processor.save_pretrained(classifier_dir)
    (classifier_dir / "recipe_config.yaml").write_text(
        "dataset: builtin:digits\nimage_size: 16\nlearning_rate: 0.001\nepsilon: 0.03137254901960784\n"
        "hub_token: hf_this_must_not_leak\noutput_dir: outputs/tiny-finetune\n"
    )
    # what an evaluation of these weights writes: the report (with their fingerprint), its per-sample
    # results and table, AutoAttack's log and the ε-curve
    from PIL import Image

    from mimir_hf.evaluation.loading import load_classifier, weights_fingerprint

    (classifier_dir / "autoattack.log").write_text("clean accuracy: 79.69%\nrobust accuracy: 39.06%\n")
    Image.new("RGB", (8, 6), (255, 255, 255)).save(classifier_dir / "accuracy_vs_epsilon.png")
    report = tiny_report(classifier_dir, weights_fingerprint=weights_fingerprint(load_classifier(classifier_dir, device="cpu")[0]))
    report.curve_file = "accuracy_vs_epsilon.png"
    report.save(classifier_dir)

    inputs = processor(images=tiny_images(), return_tensors="pt")
    with torch.no_grad():
        outputs = model(**inputs, output_hidden_states=True)
    reference = {
        "logits": outputs.logits.tolist(),
        "last_hidden_state": model.base_model(**inputs).last_hidden_state.tolist(),
        "labels": [TINY_LABELS[i] for i in outputs.logits.argmax(-1).tolist()],
    }
    (root / "reference.json").write_text(json.dumps(reference))
    return {"classifier": classifier_dir, "pretraining": pretraining_dir, "reference": root / "reference.json"}
