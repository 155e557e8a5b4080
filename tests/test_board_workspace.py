"""Where board commands read and write: packaged boards are read-only seeds; third-party explainers count."""

import pytest
import yaml

from effbench.cli import main
from effbench.errors import EffbenchError


def test_a_board_by_name_works_in_a_seeded_copy_under_the_current_folder(tmp_path, monkeypatch, capsys):
    from effbench.leaderboard import board_workspace
    from effbench.paths import shipped_dir

    monkeypatch.chdir(tmp_path)
    folder = board_workspace("standard")
    assert folder == tmp_path / "leaderboards" / "standard" or folder.resolve() == (tmp_path / "leaderboards" / "standard")
    seed = shipped_dir("leaderboards") / "standard"
    assert (folder / "board.yaml").read_bytes() == (seed / "board.yaml").read_bytes()
    committed = len(list(seed.rglob("record.json")))
    assert committed > 0 and len(list(folder.rglob("record.json"))) == committed
    assert f"copied its spec and {committed} committed records" in capsys.readouterr().err
    (folder / "board.yaml").write_text((folder / "board.yaml").read_text() + "\n# edited\n")
    assert board_workspace("standard") == folder and "# edited" in (folder / "board.yaml").read_text()


def test_build_standard_into_an_output_folder_rebuilds_the_committed_report(tmp_path, monkeypatch, capsys):
    from effbench.paths import shipped_dir

    monkeypatch.chdir(tmp_path)
    assert main(["leaderboard", "build", "standard", "--output", str(tmp_path / "out"), "--quiet"]) == 0
    seed = shipped_dir("leaderboards") / "standard"
    assert (tmp_path / "out" / "results.csv").read_text() == (seed / "results.csv").read_text()
    assert not (tmp_path / "leaderboards").exists()


def test_unknown_board_and_output_file_are_one_line_errors(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["leaderboard", "build", "standrad"]) == 2
    assert "unknown leaderboard 'standrad'. Did you mean 'standard'?" in capsys.readouterr().err
    (tmp_path / "a-file").write_text("")
    assert main(["leaderboard", "build", "standard", "--output", str(tmp_path / "a-file")]) == 2
    assert "is a file; give a folder" in capsys.readouterr().err


def test_the_installed_packages_boards_are_never_written(tmp_path, monkeypatch):
    import effbench.leaderboard.workspace as workspace

    shipped = tmp_path / "site-packages" / "effbench" / "_shipped" / "leaderboards" / "standard"
    shipped.mkdir(parents=True)
    (shipped / "board.yaml").write_text("name: standard\n")
    monkeypatch.setattr(workspace, "PACKAGE_DIR", tmp_path / "site-packages" / "effbench")
    with pytest.raises(EffbenchError, match="inside the installed effbench package, which is read-only"):
        workspace.board_workspace(shipped)


def test_a_board_keeps_the_records_of_a_package_module_class_explainer(toy_env, tmp_path, monkeypatch):
    from effbench.leaderboard import build_board, run_board

    package = tmp_path / "plugins"
    package.mkdir()
    (package / "my_explainers.py").write_text(
        "import torch\n"
        "from effbench.explainers.base import Explainer\n\n"
        "class TokenLength(Explainer):\n"
        "    name = 'token_length'\n    version = 1\n    citation = '@misc{mine, title={Token length}}'\n"
        "    defaults = {'power': 1.0}\n\n"
        "    def scores(self, model, batch):\n"
        "        tokens = [model.tokenizer.convert_ids_to_tokens(row) for row in batch.input_ids.tolist()]\n"
        "        return torch.tensor([[float(len(t)) for t in row] for row in tokens]) ** self.params['power']\n")
    monkeypatch.syspath_prepend(str(package))
    board = tmp_path / "board"
    board.mkdir()
    (board / "board.yaml").write_text(yaml.safe_dump({
        "name": "board", "description": "A third-party explainer beside random.", "tasks": ["toy"],
        "explainers": {"random": {}, "my_explainers:TokenLength": {"power": 2.0}}, "metrics": ["necessity"],
        "main_metric": "necessity", "limit": 4, "model_kind": "tiny",
    }))
    run_board(board, progress=False)
    result = build_board(board)
    assert set(result.records["toy"]) == {"random", "token_length"}
    assert result.records["toy"]["token_length"].record["explainer"]["params"] == {"power": 2.0}
    assert not [note for note in result.notes if "not on this board" in note]
