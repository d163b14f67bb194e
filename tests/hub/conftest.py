from pathlib import Path

import pytest

from tests.builders import classification_recipe
from tests.conftest import HUB_PORT
from tests.hub_server import HubServer

TOKEN = "hf_finetunekitTESTtoken4242secret"
OTHER_TOKEN = "hf_bobsTESTtoken0000"


@pytest.fixture
def hub(tmp_path: Path):
    with HubServer(tmp_path / "hub-storage", {TOKEN: "alice", OTHER_TOKEN: "bob"}, port=HUB_PORT) as server:
        yield server


@pytest.fixture
def trained_run(tiny_bert, toy_data, tmp_path, write_recipe, cli):
    run_dir = tmp_path / "runs" / "toy"
    result = cli("train", write_recipe(classification_recipe(tiny_bert, toy_data, run_dir, epochs=2)))
    assert result.exit_code == 0, result.stderr
    return run_dir
