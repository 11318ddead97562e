"""Scrapes rtchat's /metrics twice and parses each answer with Prometheus' own Python client,
for tests/it/metrics.rs: the default answer with the Prometheus text format parser
(`prometheus_client.parser`), and the answer to `Accept: application/openmetrics-text` with
the stricter OpenMetrics parser (`prometheus_client.openmetrics.parser`). A family that
either parser cannot read fails the script. Prints one JSON line: both content types and,
for each format, every family by name with its type, help and samples.

usage: prom_metrics.py URL
"""
import json
import sys
import urllib.request

from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families as prometheus_families

OPENMETRICS = "application/openmetrics-text; version=1.0.0"


def fetch(url, accept=None):
    headers = {"Accept": accept} if accept else {}
    request = urllib.request.Request(url, headers=headers)
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.headers.get("Content-Type"), response.read().decode("utf-8")


def families(parse, text):
    out = {}
    for family in parse(text):
        if family.name in out:
            sys.exit(f"the family {family.name} appears twice (a misread TYPE line?)")
        out[family.name] = {
            "type": family.type,
            "help": family.documentation,
            "samples": [[s.name, s.labels, s.value] for s in family.samples],
        }
    return out


def main(url):
    content_type, text = fetch(url)
    om_content_type, om_text = fetch(url, OPENMETRICS)
    print(
        json.dumps(
            {
                "content_type": content_type,
                "families": families(prometheus_families, text),
                "openmetrics_content_type": om_content_type,
                "openmetrics": families(openmetrics_families, om_text),
            }
        )
    )


if __name__ == "__main__":
    main(sys.argv[1])
