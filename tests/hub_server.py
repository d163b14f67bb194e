"""A small Hub-compatible HTTP server for tests, on 127.0.0.1 only.

It implements the routes the real `huggingface_hub` client uses to push and search models:
whoami, repo create (409 when it exists), branch create, preupload (every file `regular`, sent
inline), NDJSON commit, model info, model listing with `cardData` parsed from pushed READMEs and
`Link` paging, file resolve (for `ModelCard.load`), and validate-yaml. Files live on disk.
Writes need `Authorization: Bearer <token>` (401 without, 403 for another user's namespace).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shutil
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlparse

import yaml


@dataclass
class Repo:
    repo_id: str
    private: bool
    downloads: int = 0
    revisions: dict[str, str] = field(default_factory=lambda: {"main": hashlib.sha1(b"init").hexdigest()})


class HubState:
    def __init__(self, root: Path, tokens: dict[str, str], page_size: int = 2) -> None:
        self.root = root
        self.tokens = tokens  # token -> user name
        self.page_size = page_size
        self.repos: dict[str, Repo] = {}
        self.requests: list[str] = []  # "METHOD path" of every request, for assertions
        self.lock = threading.Lock()

    def files_dir(self, repo_id: str, revision: str) -> Path:
        return self.root / repo_id / revision

    def card_data(self, repo_id: str, revision: str = "main") -> dict[str, Any] | None:
        readme = self.files_dir(repo_id, revision) / "README.md"
        if not readme.is_file():
            return None
        match = re.match(r"^---\n(.*?)\n---", readme.read_text(encoding="utf-8"), re.S)
        return yaml.safe_load(match.group(1)) if match else None

    def seed_model(self, repo_id: str, card_yaml: str | None, downloads: int = 0) -> None:
        """Put a model on the server directly, as if someone else had pushed it."""
        repo = Repo(repo_id, private=False, downloads=downloads)
        self.repos[repo_id] = repo
        folder = self.files_dir(repo_id, "main")
        folder.mkdir(parents=True, exist_ok=True)
        if card_yaml is not None:
            (folder / "README.md").write_text(f"---\n{card_yaml}\n---\n\n# {repo_id}\n")


class HubServer:
    """`with HubServer(tmp, tokens) as hub:` serves on `hub.url` until the block ends."""

    def __init__(self, root: Path, tokens: dict[str, str], page_size: int = 2, port: int = 0) -> None:
        self.state = HubState(root, tokens, page_size)
        handler = type("BoundHandler", (_Handler,), {"state": self.state})
        ThreadingHTTPServer.allow_reuse_address = True
        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        handler.base_url = self.url
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> HubServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class _Handler(BaseHTTPRequestHandler):
    state: HubState
    base_url: str
    protocol_version = "HTTP/1.0"  # one request per connection: a stopped server is really gone

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        pass

    # -- plumbing -----------------------------------------------------------------------------
    def _send(self, status: int, body: Any = None, headers: dict[str, str] | None = None, raw: bytes | None = None):
        payload = raw if raw is not None else json.dumps(body if body is not None else {}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream" if raw is not None else "application/json")
        self.send_header("Content-Length", str(len(payload)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    def _error(self, status: int, message: str) -> None:
        self._send(status, {"error": message}, {"X-Error-Message": " ".join(message.split())})

    def _body(self) -> bytes:
        return self._raw_body

    def _user(self) -> str | None:
        auth = self.headers.get("Authorization", "")
        token = auth.removeprefix("Bearer ").strip() if auth.startswith("Bearer ") else None
        return self.state.tokens.get(token) if token else None

    def _writer(self, namespace: str) -> str | None:
        """The authenticated user allowed to write to `namespace`, or None after an error reply."""
        user = self._user()
        if user is None:
            self._error(401, "Invalid credentials in Authorization header")
            return None
        if namespace != user:
            self._error(403, f"You don't have the rights to write to {namespace}")
            return None
        return user

    def _visible(self, repo_id: str) -> Repo | None:
        repo = self.state.repos.get(repo_id)
        if repo is None or (repo.private and self._user() != repo_id.split("/")[0]):
            self._error(404, f"Repository Not Found for url: {self.path}")
            return None
        return repo

    def _route(self, routes: list[tuple[str, Any]]) -> None:
        path = urlparse(self.path).path
        # Read every body up front: unread bytes would corrupt the next request on a keep-alive connection.
        length = int(self.headers.get("Content-Length") or 0)
        self._raw_body = self.rfile.read(length) if length else b""
        with self.state.lock:
            self.state.requests.append(f"{self.command} {path}")
        for pattern, handler in routes:
            match = re.fullmatch(pattern, path)
            if match:
                handler(*match.groups())
                return
        self._error(404, f"no route for {self.command} {path}")

    # -- verbs --------------------------------------------------------------------------------
    def do_GET(self) -> None:
        self._route(
            [
                (r"/api/whoami-v2", self.whoami),
                (r"/api/models", self.list_models),
                (r"/api/models/([^/]+/[^/]+)(?:/revision/([^/]+))?", self.model_info),
                (r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", self.resolve),
            ]
        )

    def do_HEAD(self) -> None:
        self._route([(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", self.resolve)])

    def do_POST(self) -> None:
        self._route(
            [
                (r"/api/repos/create", self.create_repo),
                (r"/api/validate-yaml", self.validate_yaml),
                (r"/api/models/([^/]+/[^/]+)/preupload/([^/]+)", self.preupload),
                (r"/api/models/([^/]+/[^/]+)/commit/([^/]+)", self.commit),
                (r"/api/models/([^/]+/[^/]+)/branch/([^/]+)", self.create_branch),
            ]
        )

    # -- routes -------------------------------------------------------------------------------
    def whoami(self) -> None:
        user = self._user()
        if user is None:
            self._error(401, "Invalid credentials in Authorization header")
            return
        self._send(
            200, {"type": "user", "name": user, "auth": {"type": "access_token", "accessToken": {"role": "write"}}}
        )

    def create_repo(self) -> None:
        body = json.loads(self._body() or b"{}")
        namespace = body.get("organization") or self._user() or ""
        if self._writer(namespace) is None:
            return
        repo_id = f"{namespace}/{body['name']}"
        url = f"{self.base_url}/{repo_id}"
        with self.state.lock:
            if repo_id in self.state.repos:
                self._send(409, {"error": "You already created this model repo", "url": url})
                return
            private = body.get("visibility") == "private" or bool(body.get("private"))  # 2.x sends visibility
            self.state.repos[repo_id] = Repo(repo_id, private=private)
            self.state.files_dir(repo_id, "main").mkdir(parents=True, exist_ok=True)
        self._send(200, {"url": url, "name": repo_id})

    def create_branch(self, repo_id: str, branch: str) -> None:
        if self._writer(repo_id.split("/")[0]) is None or (repo := self._visible(repo_id)) is None:
            return
        if branch in repo.revisions:
            self._error(409, f"Branch {branch} already exists")
            return
        shutil.copytree(self.state.files_dir(repo_id, "main"), self.state.files_dir(repo_id, branch))
        repo.revisions[branch] = repo.revisions["main"]
        self._send(200, {})

    def validate_yaml(self) -> None:
        content = json.loads(self._body() or b"{}").get("content", "")
        front_matter = re.match(r"^---\n(.*?)\n---", content, re.S)  # the client sends the whole card
        try:
            data = yaml.safe_load(front_matter.group(1) if front_matter else content) or {}
        except yaml.YAMLError as err:
            self._error(400, f"Invalid YAML: {err}")
            return
        problem = _card_metadata_problem(data)
        if problem:
            self._error(400, problem)
            return
        self._send(200, {"errors": [], "warnings": []})

    def preupload(self, repo_id: str, revision: str) -> None:
        if self._writer(repo_id.split("/")[0]) is None or self._visible(repo_id) is None:
            return
        files = json.loads(self._body() or b"{}").get("files", [])
        self._send(
            200,
            {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files]},
        )

    def commit(self, repo_id: str, revision: str) -> None:
        if self._writer(repo_id.split("/")[0]) is None or (repo := self._visible(repo_id)) is None:
            return
        if revision not in repo.revisions:
            self._error(404, f"Invalid rev id: {revision}")
            return
        lines = [json.loads(line) for line in self._body().decode().splitlines() if line.strip()]
        folder = self.state.files_dir(repo_id, revision)
        digest = hashlib.sha1(repo.revisions[revision].encode())
        for line in lines:
            value = line["value"]
            if line["key"] == "file":
                target = folder / value["path"]
                target.parent.mkdir(parents=True, exist_ok=True)
                content = base64.b64decode(value["content"])
                target.write_bytes(content)
                digest.update(value["path"].encode() + content)
            elif line["key"] in {"deletedFile", "deletedFolder"}:
                target = folder / value["path"]
                shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)
            elif line["key"] == "lfsFile":
                self._error(400, "this test server accepts regular uploads only")
                return
        repo.revisions[revision] = digest.hexdigest()
        oid = repo.revisions[revision]
        self._send(200, {"commitUrl": f"{self.base_url}/{repo_id}/commit/{oid}", "commitOid": oid, "success": True})

    def model_info(self, repo_id: str, revision: str | None) -> None:
        repo = self._visible(repo_id)
        if repo is None:
            return
        revision = revision or "main"
        if revision not in repo.revisions:
            self._error(404, f"Invalid rev id: {revision}")
            return
        self._send(200, self._model_json(repo, revision, with_card=True, with_siblings=True))

    def list_models(self) -> None:
        query = parse_qs(urlparse(self.path).query)
        first = {key: values[0] for key, values in query.items()}
        with_card = first.get("cardData", "").lower() in {"true", "1"} or first.get("full", "").lower() in {"true", "1"}
        repos = [
            repo for repo in self.state.repos.values() if not repo.private or self._user() == repo.repo_id.split("/")[0]
        ]
        if "author" in first:
            repos = [r for r in repos if r.repo_id.split("/")[0] == first["author"]]
        if "search" in first:
            repos = [r for r in repos if first["search"].lower() in r.repo_id.lower()]
        models = [self._model_json(r, "main", with_card=with_card, with_siblings=False) for r in repos]
        if "pipeline_tag" in first:
            models = [m for m in models if m.get("pipeline_tag") == first["pipeline_tag"]]
        if first.get("sort") == "downloads":
            models.sort(key=lambda m: m["downloads"], reverse=True)
        start = int(first.get("cursor", 0))
        size = min(int(first.get("limit", self.state.page_size)), self.state.page_size)
        page = models[start : start + size]
        headers = {}
        if start + size < len(models):
            next_query = urlencode({**first, "cursor": start + size})
            headers["Link"] = f'<{self.base_url}/api/models?{next_query}>; rel="next"'
        self._send(200, page, headers)

    def resolve(self, repo_id: str, revision: str, path: str) -> None:
        repo = self._visible(repo_id)
        if repo is None:
            return
        if revision not in repo.revisions:
            self._error(404, f"Invalid rev id: {revision}")
            return
        file = self.state.files_dir(repo_id, revision) / path
        if not file.is_file():
            self._send(404, {"error": "Entry not found"}, {"X-Error-Code": "EntryNotFound"})
            return
        content = file.read_bytes()
        etag = hashlib.sha1(content).hexdigest()
        self._send(200, raw=content, headers={"ETag": f'"{etag}"', "X-Repo-Commit": repo.revisions[revision]})

    def _model_json(self, repo: Repo, revision: str, *, with_card: bool, with_siblings: bool) -> dict[str, Any]:
        card = self.state.card_data(repo.repo_id, revision) or {}
        info: dict[str, Any] = {
            "id": repo.repo_id,
            "modelId": repo.repo_id,
            "author": repo.repo_id.split("/")[0],
            "sha": repo.revisions[revision],
            "private": repo.private,
            "downloads": repo.downloads,
            "likes": 0,
            "tags": card.get("tags", []),
            "pipeline_tag": card.get("pipeline_tag"),
            "library_name": card.get("library_name"),
        }
        if with_card:
            info["cardData"] = card
        if with_siblings:
            folder = self.state.files_dir(repo.repo_id, revision)
            info["siblings"] = [
                {"rfilename": str(p.relative_to(folder))} for p in sorted(folder.rglob("*")) if p.is_file()
            ]
        return info


def _card_metadata_problem(data: dict[str, Any]) -> str | None:
    """The checks the Hub applies that a card from this toolkit could fail."""
    if not isinstance(data, dict):
        return "metadata must be a mapping"
    co2 = data.get("co2_eq_emissions")
    if isinstance(co2, dict) and not isinstance(co2.get("emissions"), (int, float)):
        return '"co2_eq_emissions.emissions" must be a number'
    for entry in data.get("model-index", []) or []:
        if "name" not in entry or not isinstance(entry.get("results"), list):
            return '"model-index[0]" must have "name" and a list of "results"'
        for result in entry["results"]:
            if "task" not in result or "type" not in result.get("task", {}):
                return '"model-index[0].results[0].task.type" is required'
            for metric in result.get("metrics", []):
                if "type" not in metric or "value" not in metric:
                    return '"model-index[0].results[0].metrics[0]" needs "type" and "value"'
    return None
