"""`salon gateway` reads its own TOML file and explains mistakes in one line."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from salon.cli import main
from salon.gateways import make_service
from salon.gateways.email import EmailService


def test_a_valid_email_config_builds_the_service(tmp_path: Path) -> None:
    path = tmp_path / "email.toml"
    path.write_text('[component]\ndomain = "email.example.org"\nsecret = "s"\n')
    service = make_service("email", path)
    assert isinstance(service, EmailService)
    assert service.gateway.users_domains == {"example.org"}


def test_mistakes_are_explained(tmp_path: Path) -> None:
    path = tmp_path / "sms.toml"
    path.write_text('[component]\ndomain = "sms.example.org"\nsecret = "s"\nprot = 1\n')
    with pytest.raises(SystemExit) as err:
        make_service("sms", path)
    message = str(err.value)
    assert "component.prot" in message
    assert "provider: Field required" in message


def test_the_cli_names_the_gateway_kinds(tmp_path: Path) -> None:
    path = tmp_path / "x.toml"
    path.write_text("")
    result = CliRunner().invoke(main, ["gateway", "fax", "--config", str(path)])
    assert result.exit_code != 0
    assert "'email'" in result.output and "'sms'" in result.output
