#!/usr/bin/env bash
# install.sh: install one-scaleway's drivers on an OpenNebula frontend.
#
# Not available yet in this version: the drivers' actions are still being built (see README.md,
# "Status"), and installing drivers that cannot act would break OpenNebula operations. It says so
# and exits non-zero without touching anything.
set -euo pipefail
echo "install.sh: not available yet in this version of one-scaleway (see README.md, \"Status\")." >&2
echo "Nothing was installed or changed." >&2
exit 1
