"""``genq up`` generates a local ``GENQ_WEBHOOK_SECRET`` beside the admin key, so per-job
webhooks (``genq submit --webhook-url``) are signed on a local stack without more set-up."""

from __future__ import annotations

from pathlib import Path

from standardwebhooks import Webhook

from genq.cli.stack.plan import SECRETS_FILE, plan_stack
from genq.settings import Settings
from genq.webhooks.signing import is_valid_secret

ALL = {"worker", "beat", "gateway", "flower", "metrics", "runtime"}


def test_the_local_stack_has_a_webhook_secret(tmp_path: Path) -> None:
    first = plan_stack(Settings(data_dir=tmp_path), ALL, environ={})
    secret = first.env["GENQ_WEBHOOK_SECRET"]
    assert is_valid_secret(secret)
    Webhook(secret)  # the standardwebhooks library takes it
    again = plan_stack(Settings(data_dir=tmp_path), ALL, environ={})
    assert again.env["GENQ_WEBHOOK_SECRET"] == secret
    mine = plan_stack(Settings(data_dir=tmp_path), ALL, environ={"GENQ_WEBHOOK_SECRET": "x"})
    assert "GENQ_WEBHOOK_SECRET" not in mine.env


def test_a_secrets_file_from_before_gains_it_and_keeps_the_admin_key(tmp_path: Path) -> None:
    (tmp_path / SECRETS_FILE).write_text(
        "GENQ_ADMIN_KEY=genq_saved-admin-key\nGENQ_FLOWER_BASIC_AUTH=admin:pw\n"
    )
    plan = plan_stack(Settings(data_dir=tmp_path), ALL, environ={})
    assert plan.env["GENQ_ADMIN_KEY"] == "genq_saved-admin-key"
    assert is_valid_secret(plan.env["GENQ_WEBHOOK_SECRET"])
    saved = (tmp_path / SECRETS_FILE).read_text()
    assert f"GENQ_WEBHOOK_SECRET={plan.env['GENQ_WEBHOOK_SECRET']}\n" in saved
