# A "pre-initialized interpreter": import a good part of the standard library,
# then wait for one line on stdin and answer. Frozen after "ready", its resume
# file starts an interpreter that has done all its imports already.
import sys, json, decimal, email.parser, http.client, asyncio, xml.etree.ElementTree, sqlite3, unittest, argparse, logging, csv, typing, dataclasses, urllib.request
print("ready", flush=True)
line = sys.stdin.readline()
print("ok", len(sys.modules), flush=True)
