"""A small OpAMP server (plain HTTP transport) for Tapio's tests.

It decodes every AgentToServer with the classes protoc generated from the
published opamp.proto (shipped in PyPI's opentelemetry-opamp-client), so a
field Tapio encodes with a wrong number or type shows up here: the message
must decode, carry no unknown fields, and re-encode to the very bytes Tapio
sent.

Driven through files in --dir, so the test needs no HTTP client:
  messages.jsonl  one line per request: the message as JSON, and checks
  remote.yaml     when present, offered as the remote config (an empty file
                  offers an empty config map); hash = sha256 of the bytes
  behaviour.json  when present, how to misbehave (re-read every request):
                  {"status": 503, "retry_after": "0"}  answer that instead
                  {"full_state": true}  set ReportFullState on every answer
                  {"redirect_to": URL}  307 to URL unless the request's Host
                                        is already URL's host
                  {"no_content_length": true}  send the answer without a
                                        Content-Length (ends at close)
Every request is logged with "t" (monotonic seconds), "host" and "token"
(the X-Tapio-Token header, if any).
Prints the port it listens on (127.0.0.1 only), then serves until killed.
"""

import argparse
import hashlib
import json
import os
import sys
import time
from urllib.parse import urlsplit
from http.server import BaseHTTPRequestHandler, HTTPServer

from google.protobuf import json_format
from opentelemetry._opamp.proto import opamp_pb2 as pb

try:
    from google.protobuf import unknown_fields
except ImportError:  # protobuf < 4.22
    unknown_fields = None

CAPS = (
    pb.ServerCapabilities_AcceptsStatus
    | pb.ServerCapabilities_OffersRemoteConfig
    | pb.ServerCapabilities_AcceptsEffectiveConfig
)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args()
    log_path = os.path.join(args.dir, "messages.jsonl")
    remote_path = os.path.join(args.dir, "remote.yaml")
    behaviour_path = os.path.join(args.dir, "behaviour.json")

    def behaviour():
        try:
            with open(behaviour_path) as f:
                return json.load(f)
        except (OSError, ValueError):
            return {}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_POST(self):
            t = time.monotonic()
            how = behaviour()
            host = self.headers.get("Host", "")
            token = self.headers.get("X-Tapio-Token")
            target = how.get("redirect_to")
            if target and urlsplit(target).netloc != host:
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with open(log_path, "a") as f:
                    f.write(json.dumps({"redirected": True, "t": t, "host": host, "token": token}) + "\n")
                self.send_response(307)
                self.send_header("Location", target)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if self.path != "/v1/opamp":
                self.send_error(404)
                return
            if self.headers.get("Content-Type") != "application/x-protobuf":
                self.send_error(415)
                return
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            msg = pb.AgentToServer()
            msg.ParseFromString(body)
            unknown = len(unknown_fields.UnknownFieldSet(msg)) if unknown_fields else 0
            rec = {
                "t": t,
                "host": host,
                "token": token,
                "msg": json_format.MessageToDict(msg, preserving_proto_field_name=True),
                "reencoded_equal": msg.SerializeToString(deterministic=True) == body,
                "unknown_fields": unknown,
            }
            if msg.HasField("remote_config_status"):
                s = msg.remote_config_status
                rec["status"] = {
                    "status": pb.RemoteConfigStatuses.Name(s.status),
                    "hash": s.last_remote_config_hash.hex(),
                    "error": s.error_message,
                }
            if msg.HasField("effective_config"):
                files = msg.effective_config.config_map.config_map
                rec["effective"] = {
                    k: {"body": v.body.decode(), "content_type": v.content_type}
                    for k, v in files.items()
                }
            if "status" in how:
                with open(log_path, "a") as f:
                    f.write(json.dumps(rec) + "\n")
                self.send_response(how["status"])
                if "retry_after" in how:
                    self.send_header("Retry-After", how["retry_after"])
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            reply = pb.ServerToAgent(instance_uid=msg.instance_uid, capabilities=CAPS)
            if how.get("full_state"):
                reply.flags |= pb.ServerToAgentFlags_ReportFullState
            if os.path.exists(remote_path):
                with open(remote_path, "rb") as f:
                    yaml = f.read()
                rc = reply.remote_config
                rc.config_hash = hashlib.sha256(yaml).digest()
                if yaml:
                    f = rc.config.config_map["tapio.yaml"]
                    f.body = yaml
                    f.content_type = "text/yaml"
                else:
                    rc.config.SetInParent()
                rec["offered"] = rc.config_hash.hex()
            with open(log_path, "a") as f:
                f.write(json.dumps(rec) + "\n")
            out = reply.SerializeToString()
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            if not how.get("no_content_length"):
                self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            try:
                self.wfile.write(out)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the agent refused an oversized answer midway

    HTTPServer.allow_reuse_address = True
    srv = HTTPServer(("127.0.0.1", args.port), Handler)
    print(srv.server_address[1], flush=True)
    sys.stdout.close()
    srv.serve_forever()


if __name__ == "__main__":
    main()
