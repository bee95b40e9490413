#!/usr/bin/env python3
"""Print the username and password git-remote-codecommit's own code computes for fixed inputs.

The cross-check of our SigV4 signing against the reference implementation:
    rcc_sign.py ACCESS_KEY SECRET TOKEN|- REGION REPO UNIX_SECONDS
prints one JSON object {"username": ..., "password": ..., "host": ...}.
"""
import datetime
import json
import sys
from urllib.parse import unquote, urlparse

import botocore.credentials
import git_remote_codecommit as rcc


def main():
    access, secret, token, region, repo, when = sys.argv[1:7]
    fixed = datetime.datetime.fromtimestamp(int(when), tz=datetime.timezone.utc).replace(tzinfo=None)

    class FixedDateTime(datetime.datetime):
        @classmethod
        def utcnow(cls):
            return fixed

    rcc.datetime.datetime = FixedDateTime
    creds = botocore.credentials.Credentials(access, secret, None if token == "-" else token)
    url = urlparse(rcc.git_url(repo, "v1", region, creds))
    print(json.dumps({
        "username": unquote(url.username),
        "password": unquote(url.password),
        "host": url.hostname,
    }))


if __name__ == "__main__":
    main()
