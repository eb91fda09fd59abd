#!/usr/bin/env python3
"""A DNS "provider" speaking mta-stsd's exec protocol, for the tests: the records of its zones
in a JSON file. Usage: store.py STORE [--token TOKEN].

STORE holds {"token": ..., "zones": [...], "records": [{name, type, ttl, value}, ...]}. Beside
it: STORE.down (if present: every request fails, exit 3), STORE.log (each request's op, one a
line), STORE.race (if present: JSON {"remove": [...], "add": [...]} applied once, just before
the next change, as another writer would).
"""
import json
import os
import sys


def fail(code, message):
    sys.stderr.write(message + "\n")
    sys.exit(code)


def same(a, b):
    return (a["name"].lower(), a["type"], a["value"]) == (b["name"].lower(), b["type"], b["value"])


def edit(records, remove, add, strict):
    for r in remove:
        match = [x for x in records if same(x, r)]
        if not match:
            if strict:
                fail(1, "%s %s %r is not there" % (r["name"], r["type"], r["value"]))
            continue
        records.remove(match[0])
    for a in add:
        if not any(same(x, a) for x in records):
            records.append(a)


def main():
    store = sys.argv[1]
    token = sys.argv[3] if len(sys.argv) > 3 and sys.argv[2] == "--token" else None
    if os.path.exists(store + ".down"):
        fail(3, "the store is down")
    request = json.load(sys.stdin)
    with open(store) as f:
        data = json.load(f)
    if token != data.get("token"):
        fail(2, "authentication failed: wrong token")
    op = request.get("op")
    with open(store + ".log", "a") as f:
        f.write("%s\n" % op)
    if op == "zones":
        print(json.dumps({"zones": data["zones"]}))
    elif op == "read":
        names = {n.lower() for n in request["names"]}
        print(json.dumps({"records": [r for r in data["records"] if r["name"].lower() in names]}))
    elif op == "change":
        if os.path.exists(store + ".race"):
            with open(store + ".race") as f:
                race = json.load(f)
            os.remove(store + ".race")
            edit(data["records"], race["remove"], race["add"], False)
            save(store, data)
        edit(data["records"], request["remove"], request["add"], True)
        save(store, data)
        print("{}")
    else:
        fail(2, "unknown op %r" % op)


def save(store, data):
    with open(store + ".tmp", "w") as f:
        json.dump(data, f)
    os.replace(store + ".tmp", store)


main()
