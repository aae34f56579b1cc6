#!/usr/bin/env python3
"""Validates a running Kith's FHIR responses against the R4B models of fhir.resources.

usage: fhir_validate.py BASE_URL < CHECKS.json

CHECKS.json is a list of {"method", "path", "token", "status", "body"?}: each request is
sent, its status must be the expected one, its media type application/fhir+json, and its
body (and every resource inside a Bundle) must validate as the resource type it names.
The models do not enforce required code bindings, so the ones Kith fills are checked here.
Prints one line per check and a summary; exits 1 when any check fails.
"""

import json
import sys
import urllib.error
import urllib.request

from fhir.resources.R4B import get_fhir_model_class

# Required bindings of elements Kith fills (FHIR R4 value sets).
BINDINGS = {
    ("Patient", "gender"): {"male", "female", "other", "unknown"},
    ("Observation", "status"): {
        "registered", "preliminary", "final", "amended", "corrected", "cancelled", "entered-in-error", "unknown",
    },
    ("Bundle", "type"): {
        "document", "message", "transaction", "transaction-response", "batch", "batch-response", "history",
        "searchset", "collection",
    },
    ("CapabilityStatement", "status"): {"draft", "active", "retired", "unknown"},
    ("CapabilityStatement", "kind"): {"instance", "capability", "requirements"},
}
ISSUE_SEVERITY = {"fatal", "error", "warning", "information"}


def fetch(base, check):
    data = None
    headers = {"Accept": "application/fhir+json"}
    if check.get("token"):
        headers["Authorization"] = f"Bearer {check['token']}"
    if "body" in check:
        data = json.dumps(check["body"]).encode()
        headers["Content-Type"] = "application/fhir+json"
    request = urllib.request.Request(base + check["path"], data=data, headers=headers, method=check["method"])
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.headers.get("Content-Type", ""), response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("Content-Type", ""), error.read()


def validate(resource, seen):
    kind = resource.get("resourceType")
    model = get_fhir_model_class(kind)
    model.model_validate(resource)
    for (bound_type, element), allowed in BINDINGS.items():
        if bound_type == kind and element in resource and resource[element] not in allowed:
            raise ValueError(f"{kind}.{element} = {resource[element]!r} is not in its required value set")
    if kind == "OperationOutcome":
        for issue in resource["issue"]:
            if issue["severity"] not in ISSUE_SEVERITY:
                raise ValueError(f"OperationOutcome.issue.severity {issue['severity']!r}")
    seen[kind] = seen.get(kind, 0) + 1
    if kind == "Bundle":
        for entry in resource.get("entry", []):
            validate(entry["resource"], seen)


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    base = sys.argv[1].rstrip("/")
    checks = json.load(sys.stdin)
    failures = 0
    seen = {}
    for check in checks:
        label = f"{check['method']} {check['path']}"
        status, content_type, body = fetch(base, check)
        try:
            if status != check["status"]:
                raise ValueError(f"status {status}, expected {check['status']}: {body[:300]!r}")
            if not content_type.startswith("application/fhir+json"):
                raise ValueError(f"media type {content_type!r}")
            validate(json.loads(body), seen)
            print(f"ok    {status} {label}")
        except Exception as error:  # noqa: BLE001 - every failure is reported, then counted
            failures += 1
            print(f"FAIL  {status} {label}: {error}")
    summary = ", ".join(f"{count} {kind}" for kind, count in sorted(seen.items()))
    print(f"{len(checks) - failures} of {len(checks)} responses valid; resources validated: {summary}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
