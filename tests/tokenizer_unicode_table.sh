#!/usr/bin/env bash
# src/tokenizer/unicode_table.c must be exactly what tools/gen_unicode.py makes
# from Debian's unicode-data (apt-get install -y unicode-data). Skipped when
# the package is absent or holds a different Unicode version than the table.
# Usage: tests/tokenizer_unicode_table.sh [BUILD_DIR]   (BUILD_DIR unused)
set -u
cd "$(dirname "$0")/.."
ucd=/usr/share/unicode
table=src/tokenizer/unicode_table.c
if [ ! -f "$ucd/UnicodeData.txt" ] || [ ! -f "$ucd/PropList.txt" ]; then
    echo "  skipped: $ucd absent (apt-get install -y unicode-data)"
    echo "0 passed, 0 failed, 1 skipped"; exit 0
fi
have=$(sed -n 's/^# PropList-\([0-9.]*\)\.txt.*/\1/p' "$ucd/PropList.txt" | head -n 1)
want=$(sed -n 's/^const char tok_ucd_version\[\] = "\([0-9.]*\)";/\1/p' "$table")
if [ "$have" != "$want" ]; then
    echo "  skipped: $ucd is Unicode $have, the table was made from $want"
    echo "0 passed, 0 failed, 1 skipped"; exit 0
fi
if python3 tools/gen_unicode.py "$ucd" | cmp -s - "$table"; then
    echo "ok   unicode_table.c matches tools/gen_unicode.py (Unicode $have)"
    echo "1 passed, 0 failed, 0 skipped"
else
    echo "FAIL unicode_table.c differs from what tools/gen_unicode.py makes from $ucd"
    echo "0 passed, 1 failed, 0 skipped"; exit 1
fi
