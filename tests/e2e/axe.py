"""axe-core, the accessibility checker the browser tests inject into pages.

It comes from the npm registry into var/node (not a project dependency: only the tests
use it). `make axe` or `python -m tests.e2e.axe` installs it; the browser tests install
it themselves when it is missing.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent.parent
VERSION = "4.14.1"
PREFIX = ROOT / "var" / "node"
SCRIPT = PREFIX / "node_modules" / "axe-core" / "axe.min.js"
# What must never be found: "serious" and "critical" violations (WCAG 2.x A and AA rules).
BLOCKING = ("serious", "critical")


def install() -> Path:
    """The path of axe.min.js, installed with npm if it is not there yet."""
    if SCRIPT.exists():
        return SCRIPT
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("axe-core is missing and npm is not installed (apt-get install npm)")
    PREFIX.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            npm,
            "install",
            "--no-save",
            "--no-audit",
            "--no-fund",
            "--prefix",
            str(PREFIX),
            f"axe-core@{VERSION}",
        ],
        check=True,
    )
    return SCRIPT


def run(page: Any) -> list[dict[str, Any]]:
    """Inject axe into `page` (a Playwright page) and return its WCAG A/AA violations.

    The context must be created with `bypass_csp=True`: the injected script is inline.
    """
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.add_script_tag(path=str(install()))
    return page.evaluate(
        """async () => {
            const results = await axe.run(document, {
                runOnly: {type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa", "best-practice"]},
                resultTypes: ["violations"],
            });
            return results.violations.map((v) => ({
                id: v.id, impact: v.impact, help: v.help,
                nodes: v.nodes.map((n) => ({target: n.target.join(" "), summary: n.failureSummary})),
            }));
        }"""
    )


def blocking(violations: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [v for v in violations if v["impact"] in BLOCKING]


def describe(violations: list[dict[str, Any]]) -> str:
    lines = []
    for v in violations:
        lines.append(f"{v['impact']}: {v['id']} ({v['help']})")
        for node in v["nodes"][:5]:
            lines.append(f"    {node['target']}: {node['summary']}")
    return "\n".join(lines)


if __name__ == "__main__":
    print(install().relative_to(ROOT))
