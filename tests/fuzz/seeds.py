#!/usr/bin/env python3
"""seeds.py: writes the seed corpora of tests/fuzz/corpus/ for the targets
whose inputs are framed (fuzz.h's chunks) or files: sig_verify,
headers_json, config and refund_export, from the cases of the unit tests
(test_signature.c, test_config.c, test_finance_formats.c) and the headers
the lanes carry (signature, x-coupond-attempt, RabbitMQ's x-death) with edge
bytes. The msg_parse
corpus is the bodies of test_message.c's tables, one file each.

usage: tests/fuzz/seeds.py   (rewrites the four directories)"""
import hashlib
import hmac
import os
import pathlib
import shutil
import struct

HERE = pathlib.Path(__file__).resolve().parent
CORPUS = HERE / "corpus"
BODY = b'{"payment_id":"pay-1","order_id":1234,"user_id":34,"deal_id":7,"quantity":2,' \
       b'"amount_cents":1998,"currency":"USD","paid_at":"2026-11-21T10:00:00.000Z"}'


def chunk(b):
    """fuzz.h's chunk: a length byte, then the bytes (None: NULL)."""
    if b is None:
        return b"\xff"
    assert len(b) < 255
    return bytes([len(b)]) + b


def write(target, name, data):
    d = CORPUS / target
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data)


def secret(fill, n):
    return bytes((fill + i * 7) & 0xff for i in range(n))


def sig_seeds():
    t = "fuzz_sig_verify"
    k1 = secret(0x01, 16)
    good = b"k1:" + hmac.new(k1, BODY, hashlib.sha256).hexdigest().encode()
    raw = {
        "missing": b"\x00" + chunk(None) + BODY,
        "empty": b"\x00" + chunk(b"") + BODY,
        "good": b"\x00" + chunk(good) + BODY,
        "good-upper": b"\x00" + chunk(good[:3] + good[3:].upper()) + BODY,
        "no-colon": b"\x00" + chunk(b"k1" + good[3:]) + BODY,
        "bad-id": b"\x00" + chunk(b"k 1:" + good[3:]) + BODY,
        "short-hex": b"\x00" + chunk(good[:-1]) + BODY,
        "long-hex": b"\x00" + chunk(good + b"0") + BODY,
        "non-hex": b"\x00" + chunk(good[:-1] + b"g") + BODY,
        "unknown-key": b"\x00" + chunk(b"k9:" + good[3:]) + BODY,
        "too-long": b"\x00" + chunk(b"a" * 64 + b":" + b"0" * 65) + BODY,
        "empty-body": b"\x00" + chunk(b"k1:" + hmac.new(k1, b"", hashlib.sha256).hexdigest().encode()),
        "colon-first": b"\x00" + chunk(b":" + b"0" * 64) + BODY,
        "nul-in-id": b"\x00" + chunk(b"k\x001:" + good[3:]) + BODY,
    }
    for key in range(4):
        raw["signed-key%d" % key] = bytes([1 | key << 1]) + chunk(b"") + BODY
        raw["signed-key%d-flip" % key] = bytes([1 | key << 1]) + chunk(b"\x05\x01") + BODY
        raw["signed-key%d-cut" % key] = bytes([1 | key << 1]) + chunk(b"\x05\x01\x40") + BODY
    raw["signed-id-damage"] = b"\x01" + chunk(b"\x00\x7b") + BODY
    for name, data in raw.items():
        write(t, name, data)


def amqp_table(entries):
    """AMQP 0-9-1 field table (RabbitMQ's encoding)."""
    out = b""
    for key, kind, value in entries:
        out += bytes([len(key)]) + key + kind + value
    return struct.pack(">I", len(out)) + out


def longstr(b):
    return struct.pack(">I", len(b)) + b


def amqp_props(table):
    """Basic class properties with only the headers flag (bit 13)."""
    return struct.pack(">H", 1 << 13) + table


def headers_seeds():
    t = "fuzz_headers_json"
    kafka = {
        "kafka-plain": chunk(b"1234") + b"\x03" + chunk(b"signature") + chunk(b"k1:" + b"ab" * 32),
        "kafka-no-key": chunk(None) + b"\x00" + chunk(b"x-coupond-attempt") + chunk(b"2"),
        "kafka-binary-key": chunk(b"\x00\xff\xfe") + b"\x01" + chunk(b"bin") + chunk(b"\xc3\x28"),
        "kafka-null-value": chunk(b"7") + b"\x00" + chunk(b"empty") + chunk(None),
        "kafka-bad-name": chunk(b"7") + b"\x00" + chunk(b"na\xffme") + chunk(b"v"),
        "kafka-nul-name": chunk(b"7") + b"\x00" + chunk(b"a\x00b") + chunk(b"v"),
        "kafka-duplicates": chunk(b"7") + b"\x00" + chunk(b"h") + chunk(b"1") + chunk(b"h") + chunk(b"\x80"),
        "kafka-control": chunk(b"\t\n\"\\") + b"\x00" + chunk(b"\x1b[31m") + chunk(b"\x7f\xed\xa0\x80"),
        "kafka-utf8": chunk("€".encode()) + b"\x00" + chunk("ключ".encode()) + chunk("😀".encode()),
    }
    for name, data in kafka.items():
        write(t, name, b"\x00" + data)
    xdeath = amqp_table([(b"count", b"l", struct.pack(">q", 1)),
                         (b"reason", b"S", longstr(b"expired")),
                         (b"queue", b"S", longstr(b"coupond.w.retry.1000")),
                         (b"time", b"T", struct.pack(">Q", 1795255200)),
                         (b"routing-keys", b"A", longstr(b"S" + longstr(b"coupond.w.work")))])
    amqp = {
        "amqp-none": b"\x01" + chunk(b"coupond.w.work"),
        "amqp-signature": b"\x01" + chunk(b"coupond.w.work")
        + amqp_props(amqp_table([(b"signature", b"S", longstr(b"k1:" + b"ab" * 32)),
                                 (b"x-coupond-attempt", b"I", struct.pack(">i", 3))])),
        "amqp-x-death": b"\x03" + chunk(b"coupond.w.work")
        + amqp_props(amqp_table([(b"x-death", b"A", longstr(b"F" + xdeath))])),
        "amqp-kinds": b"\x01" + chunk(b"rk")
        + amqp_props(amqp_table([(b"b", b"t", b"\x01"), (b"i8", b"b", b"\x80"), (b"u8", b"B", b"\xff"),
                                 (b"i16", b"s", b"\x80\x00"), (b"u16", b"u", b"\xff\xff"),
                                 (b"u32", b"i", b"\xff\xff\xff\xff"), (b"i64", b"l", b"\x80" + b"\x00" * 7),
                                 (b"f32", b"f", b"\x7f\xc0\x00\x00"), (b"f64", b"d", b"\x7f\xf0" + b"\x00" * 6),
                                 (b"v", b"V", b""), (b"x", b"x", longstr(b"\x00\x01")),
                                 (b"dec", b"D", b"\x02\x00\x00\x00\x64")])),
        "amqp-binary": b"\x01" + chunk(b"\xff\x00")
        + amqp_props(amqp_table([(b"k\xff", b"S", longstr(b"\xc0\x80")), (b"k\xff", b"S", longstr(b"dup"))])),
        "amqp-nested": b"\x01" + chunk(b"rk")
        + amqp_props(amqp_table([(b"t", b"F", amqp_table([(b"t", b"F", amqp_table([(b"a", b"A", longstr(b"I\x00\x00\x00\x01"))]))]))])),
    }
    for name, data in amqp.items():
        write(t, name, data)


def config_seeds():
    t = "fuzz_config"
    base = (b'cluster = "dc1";\n'
            b'store: { conninfo = "host=db"; };\n'
            b'lanes: {\n'
            b'  l: { kafka: { brokers = "k:9092"; }; };\n'
            b'  w: { amqp: { url = "amqp://u@r:5672/"; }; };\n'
            b'};\n'
            b'security: {\n'
            b'  keys = ( { id = "k1"; secret = "file:k1.key"; },\n'
            b'           { id = "k2"; secret = "env:TEST_K2"; } );\n'
            b'  sign_with = "k1";\n'
            b'};\n')
    extra = {
        "minimal": b"",
        "syntax-error": b"issue = ;\n",
        "unknown-setting": b"issue: { batchsize = 5; };\n",
        "int-as-string": b'issue: { refund_after_s = "1800"; };\n',
        "out-of-range": b"issue: { batch_size = 0; };\n",
        "bad-enum": b'log: { level = "loud"; };\n',
        "list-descending": b"issue: { retry_delays_ms = [ 5000, 1000 ]; };\n",
        "list-of-strings": b'issue: { retry_delays_ms = [ "a" ]; };\n',
        "deadline-short": b"issue: { refund_after_s = 5; };\n",
        "everything": b'issue: { refund_after_s = 1800; retry_delays_ms = [ 1000, 5000 ]; batch_size = 500;'
                      b' batch_wait_ms = 5; sweep_interval_ms = 1000; };\n'
                      b'message: { max_version = 2; };\npublish: { timeout_ms = 5000; };\n'
                      b'dlq: { max_replays = 5; };\nreconcile: { grace_s = 60; };\n'
                      b'metrics: { listen = "127.0.0.1:9464"; stall_timeout_s = 60; pending_interval_s = 15; };\n'
                      b'log: { level = "debug"; format = "text"; };\n',
        "brokers-file": b'lanes: { l: { kafka: { brokers = "file:brokers"; topic = "t"; group = "g"; }; }; };\n',
        "secret-inline": b'store: { password = "hunter2hunter2"; };\n',
        "secret-file": b'store: { password = "file:k1.key"; };\n',
        "secret-env": b'store: { password = "env:TEST_K2"; };\n',
        "secret-missing": b'store: { password = "file:nope"; };\n',
        "amqp-lane-l": b'lanes: { l: { transport = "amqp"; amqp: { url = "amqp://u:pw@r:5672/%2f"; queue = "q"; }; }; };\n',
        "bad-listen": b'metrics: { listen = "nowhere"; };\n',
        "sign-with-unknown": b'security: { sign_with = "k9"; };\n',
        "duplicate-key": b"issue: { batch_size = 1; batch_size = 2; };\n",
        "float": b"issue: { batch_size = 1.5; };\n",
        "int64": b"issue: { batch_size = 5000000000L; };\n",
        "hex": b"issue: { batch_size = 0x10; };\n",
        "bool-as-int": b"publish: { timeout_ms = true; };\n",
        "string-escapes": b'cluster = "a\\"b\\\\c\\x41";\n',
    }
    for name, data in extra.items():
        write(t, name, base + data)
    write(t, "keys-bad", base.replace(b'"k2"', b'"k 2"'))
    write(t, "keys-short-secret", base.replace(b'env:TEST_K2', b'env:HOME'))
    write(t, "empty", b"")
    write(t, "repo-default", (HERE.parent.parent / "conf" / "coupond.cfg").read_bytes())


def export_seeds():
    t = "fuzz_refund_export"
    rows = [
        [b"1", b"2026-11-21T10:00:00.000Z", b"1234", b"pay-1", b"34", b"15.00", b"EUR",
         b"rejected: amount_cents 2999 != price 1500 x quantity 2 = 3000 (deal 1)", b"ab" * 32],
        [b"deadline"], [b""], [b"", b""], [b"a,b", b'say "no"'], [b'"'], [b"two\nlines", b"crlf\r\n", b"cr\r"],
        [b" lead", b"trail ", b"in side"], [b"semi;colon\ttab"], ["ünïcödé, too".encode()],
        [b"\x00nul", b"\x7fdel", b"\x1b[31m"], [b"\xc3\x28", b"\xed\xa0\x80"], ["😀\u2028".encode()],
        [b"\\", b'\\"', b"/"],
    ]
    for i, r in enumerate(rows):
        write(t, "row-%02d" % i, b"\x1f".join(r))


def main():
    for t in ("fuzz_sig_verify", "fuzz_headers_json", "fuzz_config", "fuzz_refund_export"):
        shutil.rmtree(CORPUS / t, ignore_errors=True)
    sig_seeds()
    headers_seeds()
    config_seeds()
    export_seeds()
    for t in sorted(os.listdir(CORPUS)):
        print("%s: %d files" % (t, len(os.listdir(CORPUS / t))))


if __name__ == "__main__":
    main()
