"""Every setting as a reader of ``docs/configuration.md`` sees it (variable, default, meaning), generated from
the fields of the settings models, so the page cannot fall behind them: ``python -m referrals.settings_reference
--write`` rewrites the page's reference section, and a unit test fails when the page and the models differ.
"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from referrals.settings import PROJECT_ROOT, Settings

PAGE = PROJECT_ROOT / "docs" / "configuration.md"
BEGIN = "<!-- the settings reference, generated: python -m referrals.settings_reference --write -->"
END = "<!-- end of the generated settings reference -->"
WIDTH = 110


def _section(field: FieldInfo) -> type[BaseModel] | None:
    kind = field.annotation
    return kind if isinstance(kind, type) and issubclass(kind, BaseModel) else None


def default_text(field: FieldInfo) -> str:
    if field.default is PydanticUndefined and getattr(field.default_factory, "__name__", "") == "<lambda>":
        return "computed (see the meaning)"  # e.g. the machine's cores: not the same on every machine
    value = field.default if field.default is not PydanticUndefined else field.default_factory()
    if isinstance(value, SecretStr):
        return "a development key"
    if value is None:
        return "none"
    if isinstance(value, Path):
        return f"`{value.relative_to(PROJECT_ROOT).as_posix() if value.is_relative_to(PROJECT_ROOT) else value}`" \
            + (" (in the project)" if value.is_relative_to(PROJECT_ROOT) else "")
    if isinstance(value, bool | list | dict | frozenset):
        return f"`{json.dumps(sorted(value) if isinstance(value, frozenset) else value)}`"
    if isinstance(value, float) and value.is_integer():
        return f"`{int(value)}`"
    return f"`{value}`" if value != "" else "empty"


def settings_fields(model: type[BaseModel] = Settings, prefix: str = "REFERRALS_"
                    ) -> Iterator[tuple[str, str, FieldInfo]]:
    """(section, variable, field) of every setting, the sections' fields after the top-level ones."""
    nested = []
    for name, field in model.model_fields.items():
        if _section(field) is None:
            yield "", prefix + name.upper(), field
        else:
            nested.append((name, field))
    for name, field in nested:
        for _, variable, inner in settings_fields(_section(field), f"{prefix}{name.upper()}__"):
            yield name, variable, inner


def reference() -> str:
    """The reference section: per section of ``Settings``, what it configures, then one item per setting."""
    lines: list[str] = []
    heading = None
    for section, variable, field in settings_fields():
        if section != heading:
            heading = section
            model = _section(Settings.model_fields[section]) if section else None
            about = " ".join((model.__doc__ or "").split()).replace("``", "`") if model else \
                "The process as a whole."
            lines += ["", f"### `{variable.rsplit('__', 1)[0] + '__*' if section else 'REFERRALS_*'}`", "",
                      *textwrap.wrap(about, WIDTH), ""]
        item = f"- `{variable}` = {default_text(field)}: {field.description or ''}".rstrip(": ")
        lines += textwrap.wrap(item, WIDTH, subsequent_indent="  ", break_long_words=False, break_on_hyphens=False)
    return "\n".join([BEGIN, *lines, "", END])


def with_reference(page: str) -> str:
    """``page`` with its reference section replaced by the current one."""
    start, end = page.find(BEGIN), page.find(END)
    if start < 0 or end < start:
        raise ValueError(f"{PAGE.name} has no reference section (between {BEGIN!r} and {END!r})")
    return page[:start] + reference() + page[end + len(END):]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help=f"rewrite the section in {PAGE}")
    args = parser.parse_args(argv)
    if not args.write:
        print(reference())
        return 0
    PAGE.write_text(with_reference(PAGE.read_text()))
    print(f"wrote the settings reference to {PAGE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
