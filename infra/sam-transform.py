"""The SAM transform of template.yaml, for the local AWS emulator.

    .venv/bin/python infra/sam-transform.py template.yaml > transformed.json

Runs AWS's own SAM translator (samtranslator, the code behind the
AWS::Serverless-2016-10-31 transform) and prints the CloudFormation
template as JSON. moto server's CloudFormation does not run transforms
itself, so `local-stack` deploys this output. The functions' code is
replaced by a one-line inline placeholder: the emulator only records the
functions, and the local runners call the handlers in-process.
"""

import json
import sys

from samtranslator.model.exceptions import InvalidDocumentException
from samtranslator.translator.managed_policy_translator import ManagedPolicyLoader
from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse

PLACEHOLDER_CODE = "the local stack runs this function's handler in-process"


class NoManagedPolicies(ManagedPolicyLoader):
    """The template names no managed policies by name: nothing to look up."""

    def __init__(self) -> None:
        pass

    def load(self) -> dict[str, str]:
        return {}


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit("usage: sam-transform.py TEMPLATE")
    with open(sys.argv[1], encoding="utf-8") as f:
        template = yaml_parse(f.read())
    for resource in template.get("Resources", {}).values():
        if resource.get("Type") == "AWS::Serverless::Function":
            props = resource.setdefault("Properties", {})
            props.pop("CodeUri", None)
            props["InlineCode"] = PLACEHOLDER_CODE
    try:
        transformed = transform(template, {}, NoManagedPolicies())
    except InvalidDocumentException as e:
        sys.exit("; ".join(cause.message for cause in e.causes) or str(e))
    json.dump(transformed, sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
