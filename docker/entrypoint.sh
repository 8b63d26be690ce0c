#!/bin/sh
# The image's entry point: refuses to start, with the fix, when the data directory (the /data
# volume) is not writable by the container's user, instead of failing later on the database.
# `docker run -v "$PWD/data:/data"` makes Docker create ./data owned by root when it does not
# exist, and the bot runs as uid 10001. IMAGEBOT_DATA_DIR names another directory to check.
set -eu

data_dir="${IMAGEBOT_DATA_DIR:-/data}"
probe="$data_dir/.imagebot-write-test.$$"

if [ ! -d "$data_dir" ] || ! (: > "$probe") 2>/dev/null; then
    uid="$(id -u)"
    cat >&2 <<MESSAGE
imagebot: $data_dir is not a directory this container's user (uid $uid) can write to; the
SQLite database and the image spool live there. Docker creates a missing mounted directory
owned by root. Fix it on the host, then start the container again: either give the directory
(./data in the README's docker run line) to that user:
    sudo chown $uid ./data
or create it yourself and run the container as yourself:
    mkdir -p data && docker run --user "\$(id -u):\$(id -g)" ...
MESSAGE
    exit 2
fi
rm -f "$probe"
exec python -m bot "$@"
