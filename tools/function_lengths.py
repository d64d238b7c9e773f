#!/usr/bin/env python3
"""Lists Swift functions, initializers and closures-as-properties longer than a limit.

Usage: tools/function_lengths.py [--limit 80] [Sources]
Counts the lines from a `func`/`init`/`subscript` declaration to its closing brace
(braces inside string literals and comments are ignored). Exits 1 when any is over.
"""
import re
import sys
from pathlib import Path

DECLARATION = re.compile(r'^\s*(?:@\w+(?:\([^)]*\))?\s+)*(?:(?:public|private|fileprivate|internal|static|final|override|'
                         r'mutating|nonmutating|class|convenience|required|@discardableResult|@inlinable)\s+)*'
                         r'(func\s+[^\s(<]+|init[?!]?|subscript)\s*[(<]')


def code_only(line, in_comment):
    """The line with string literals and comments blanked; whether a block comment stays open."""
    out, i = [], 0
    in_string = False
    while i < len(line):
        if in_comment:
            end = line.find('*/', i)
            if end < 0:
                return ''.join(out), True
            i, in_comment = end + 2, False
            continue
        c = line[i]
        if in_string:
            if c == '\\':
                i += 2
                continue
            if c == '"':
                in_string = False
            i += 1
            continue
        if line.startswith('//', i):
            break
        if line.startswith('/*', i):
            in_comment, i = True, i + 2
            continue
        if c == '"':
            in_string = True
        else:
            out.append(c)
        i += 1
    return ''.join(out), in_comment


def long_functions(path, limit):
    lines = Path(path).read_text(encoding='utf-8').splitlines()
    cleaned, in_comment = [], False
    for line in lines:
        code, in_comment = code_only(line, in_comment)
        cleaned.append(code)
    found = []
    for start, line in enumerate(lines):
        match = DECLARATION.match(line)
        if not match:
            continue
        depth, opened = 0, False
        for end in range(start, len(lines)):
            for c in cleaned[end]:
                if c == '{':
                    depth, opened = depth + 1, True
                elif c == '}':
                    depth -= 1
            if opened and depth <= 0:
                break
            if not opened and end > start and cleaned[end].strip() == '':
                break  # a protocol requirement: no body
        if opened and end - start + 1 > limit:
            found.append((end - start + 1, path, start + 1, match.group(1)))
    return found


def main(argv):
    limit = 80
    if '--limit' in argv:
        i = argv.index('--limit')
        limit = int(argv[i + 1])
        argv = argv[:i] + argv[i + 2:]
    roots = argv or ['Sources']
    found = []
    for root in roots:
        for path in sorted(Path(root).rglob('*.swift')):
            found += long_functions(str(path), limit)
    for length, path, line, name in sorted(found, reverse=True):
        print(f'{path}:{line}: {name} is {length} lines (limit {limit})')
    print(f'{len(found)} function(s) over {limit} lines')
    return 1 if found else 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
