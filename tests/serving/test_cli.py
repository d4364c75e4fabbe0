"""Tests of `netprog serve`, `netprog audit` and `netprog token-hash` (serving/cli.py)."""

from __future__ import annotations

import json
import sys

import click
import pytest
from click.testing import CliRunner

from serving import cli
from serving.audit import AuditEntry, AuditLog
from serving.settings import hash_token


@pytest.fixture
def audit_env(settings_env, tmp_path):
    log_path = settings_env(audit_salt="cli-test-key")
    log = AuditLog(log_path, b"cli-test-key", fsync=False)
    log.append(
        [
            AuditEntry(
                f"prediction-{i}", "/v1/prognosis", "netprog-bundle:x", "anonymous", "0" * 64
            )
            for i in range(3)
        ]
    )
    return log


def test_token_hash_prints_the_sha256_of_the_token_read_from_stdin():
    result = CliRunner().invoke(cli.token_hash, input="my-token\n")

    assert result.exit_code == 0
    assert result.output.strip() == hash_token("my-token")


def test_token_hash_generate_prints_a_new_token_and_its_hash():
    result = CliRunner().invoke(cli.token_hash, ["--generate"])

    token_line, hash_line = result.output.strip().splitlines()
    token = token_line.removeprefix("token: ")
    assert len(token) >= 40
    assert hash_line == f"sha256: {hash_token(token)}"


def test_audit_lists_the_latest_records(audit_env):
    result = CliRunner().invoke(cli.audit, ["--limit", "2"])

    assert result.exit_code == 0
    lines = result.output.strip().splitlines()
    assert len(lines) == 2
    assert "prediction-1" in lines[0]
    assert "prediction-2" in lines[1]


def test_audit_json_prints_whole_records(audit_env):
    result = CliRunner().invoke(cli.audit, ["--json"])

    records = [json.loads(line) for line in result.output.strip().splitlines()]
    assert [r["seq"] for r in records] == [0, 1, 2]


def test_audit_verify_exits_0_on_an_intact_log_and_1_on_an_edited_one(audit_env):
    intact = CliRunner().invoke(cli.audit, ["verify"])
    text = audit_env.path.read_text(encoding="utf-8").replace("prediction-1", "prediction-9")
    audit_env.path.write_text(text, encoding="utf-8")
    edited = CliRunner().invoke(cli.audit, ["verify"])

    assert intact.exit_code == 0
    assert "OK, 3 record(s)" in intact.output
    assert edited.exit_code == 1
    assert "line 2 (seq 1): record was edited" in edited.output


def test_audit_head_prints_the_anchor(audit_env):
    result = CliRunner().invoke(cli.audit, ["head"])

    head = json.loads(result.output)
    assert head["count"] == 3
    assert head["last_hash"] == list(audit_env.records())[-1]["record_hash"]


def test_serve_execs_bentoml_serve_on_loopback_without_telemetry(
    model_tag, settings_env, monkeypatch
):
    settings_env(model_tag=model_tag)
    calls = []
    monkeypatch.setattr(cli.os, "execve", lambda path, args, env: calls.append((path, args, env)))

    result = CliRunner().invoke(cli.serve, ["--port", "3456"])

    assert result.exit_code == 0, result.output
    [(path, args, env)] = calls
    assert path == sys.executable
    assert args[1:5] == ["-m", "bentoml", "serve", "serving.service:NetPrognosis"]
    assert args[args.index("--host") + 1] == "127.0.0.1"
    assert args[args.index("--port") + 1] == "3456"
    assert env["BENTOML_DO_NOT_TRACK"] == "true"


def test_serve_trains_the_synthetic_default_when_the_store_is_empty(settings_env, monkeypatch):
    settings_env()
    from store import registry
    from store.exceptions import RegistryError

    def no_model(tag=None):
        raise RegistryError("no trained model")

    trained = []

    @click.group()
    def fake_main():
        pass

    @fake_main.command()
    @click.option("--data")
    @click.option("--seed", default=0)
    def train(data, seed):
        trained.append((data, seed))

    fake_main.add_command(cli.serve)
    monkeypatch.setattr(registry, "get_model", no_model)
    monkeypatch.setattr(cli.os, "execve", lambda *args: None)

    result = CliRunner().invoke(fake_main, ["serve"])

    assert result.exit_code == 0, result.output
    assert trained == [("synthetic", 0)]
    assert "SYNTHETIC" in result.output


def test_serve_alone_on_an_empty_store_says_to_train_first(settings_env, monkeypatch):
    settings_env()
    from store import registry
    from store.exceptions import RegistryError

    def no_model(tag=None):
        raise RegistryError("no trained model")

    monkeypatch.setattr(registry, "get_model", no_model)
    monkeypatch.setattr(cli.os, "execve", lambda *args: None)

    result = CliRunner().invoke(cli.serve, [])

    assert result.exit_code == 1
    assert "netprog train --data synthetic" in result.output


def test_serve_with_a_missing_explicit_tag_fails_with_the_registry_message(settings_env):
    settings_env(model_tag="netprog-bundle:doesnotexist")

    result = CliRunner().invoke(cli.serve, [])

    assert result.exit_code == 1
    assert "netprog train" in result.output


def test_the_real_train_command_takes_the_data_option_serve_passes():
    from netprog.cli import main

    with click.Context(main) as context:
        train = main.get_command(context, "train")

    assert train is not None
    assert any("--data" in parameter.opts for parameter in train.params)
