#!/bin/bash
# Check a published bundle folder on the host, as `airlock bundle verify` does for the tar: every file
# against checksums.txt, checksums.txt against the signed manifest's checksums_sha256, nothing unlisted,
# nothing but plain files and folders. Prints one line per problem; exit 1 if there is any.
set -euo pipefail
cd "$1"
problems=0
say() { echo "$*"; problems=1; }
for signed in checksums.txt manifest.yaml manifest.sig; do
  [ -f "$signed" ] || { echo "$1: no $signed: not a bundle the import published"; exit 1; }
done
listed=$(sha256sum < checksums.txt | cut -c1-64)
expected=$(sed -n 's/^checksums_sha256: *//p' manifest.yaml)
[ "$listed" = "$expected" ] || say "checksums.txt: sha256 $listed, the signed manifest says $expected: altered"
sha256sum --quiet --strict -c checksums.txt 2>&1 | sed 's/^/altered or missing: /' || problems=1
while IFS= read -r path; do say "unlisted: $path (not in checksums.txt)"; done < <(
  find . -mindepth 1 -type f -printf '%P\n' | grep -vxE 'checksums\.txt|manifest\.yaml|manifest\.sig' |
    LC_ALL=C sort | LC_ALL=C comm -23 - <(cut -c67- checksums.txt | LC_ALL=C sort))
while IFS= read -r path; do say "not a plain file: $path"; done < <(find . -mindepth 1 ! -type f ! -type d -printf '%P\n')
exit "$problems"
