"""api.deps.on_one_thread: a blocking handler runs on a route thread in one hop, FastAPI still
reads its parameters and dependencies, its answer is checked on the event loop, and the
registry sessions it was given leave that thread closed (the routes' answers over real servers
are tested in tests/test_api.py and the others)."""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Annotated, Any

import fastapi.routing
import pytest
from fastapi import Depends, FastAPI, Query, Request
from fastapi.testclient import TestClient
from pydantic import BaseModel
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session

from api import deps
from api.deps import on_one_thread


class Answer(BaseModel):
    n: int
    thread: str
    in_transaction: bool


async def given_session(request: Request) -> Session:
    """A session of the app's engine, kept in the app's list for the test to look at."""
    made = Session(request.app.state.engine)
    request.app.state.given.append(made)
    return made


Db = Annotated[Session, Depends(given_session)]


@pytest.fixture
def app(tmp_path: Path) -> Iterator[tuple[FastAPI, list[Session]]]:
    app = FastAPI()
    app.state.engine = create_engine(f"sqlite:///{tmp_path / 'x.db'}")
    app.state.given = []

    @app.get("/answer", response_model=Answer)
    @on_one_thread
    def answer(db: Db, n: Annotated[int, Query(ge=1)]) -> Answer:
        db.execute(text("SELECT 1"))  # begins a transaction, left open
        return Answer(
            n=n, thread=threading.current_thread().name, in_transaction=db.in_transaction()
        )

    @app.get("/fails")
    @on_one_thread
    def fails(db: Db) -> None:
        db.execute(text("SELECT 1"))
        raise LookupError("the handler failed")

    yield app, app.state.given
    app.state.engine.dispose()


def test_the_handler_runs_on_a_route_thread_and_its_session_is_closed_there(
    app: tuple[FastAPI, list[Session]],
) -> None:
    server, given = app
    with TestClient(server) as client:
        body = client.get("/answer", params={"n": 3}).json()
        assert body["n"] == 3 and body["in_transaction"]
        assert body["thread"] != threading.current_thread().name
        assert len(given) == 1 and not given[0].in_transaction()  # closed when it returned
        # FastAPI still checks the parameters it reads through the wrapper.
        refused = client.get("/answer", params={"n": 0})
        assert refused.status_code == 422 and refused.json()["detail"][0]["loc"] == ["query", "n"]


def test_a_failing_handler_still_leaves_its_session_closed(
    app: tuple[FastAPI, list[Session]],
) -> None:
    server, given = app
    with TestClient(server, raise_server_exceptions=False) as client:
        assert client.get("/fails").status_code == 500
    assert len(given) == 1 and not given[0].in_transaction()


def test_one_hop_per_request(
    app: tuple[FastAPI, list[Session]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """FastAPI takes the wrapper for a coroutine: it runs nothing of the request on the thread
    pool itself (a plain `def` handler: the handler, then the check of its answer)."""
    hops: list[str] = []

    def counted(where: str, hop: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def counting(*args: Any, **kwargs: Any) -> Any:
            hops.append(where)
            return await hop(*args, **kwargs)

        return counting

    monkeypatch.setattr(deps, "run_in_threadpool", counted("ours", deps.run_in_threadpool))
    monkeypatch.setattr(
        fastapi.routing, "run_in_threadpool", counted("fastapi", fastapi.routing.run_in_threadpool)
    )
    server, _ = app
    with TestClient(server) as client:
        assert client.get("/answer", params={"n": 1}).status_code == 200
    assert hops == ["ours"]
