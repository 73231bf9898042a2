"""An echo bot for tigase-rest's webhooks: [webhooks] url = "http://127.0.0.1:8081/"."""
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class EchoBot(BaseHTTPRequestHandler):
    def do_POST(self):
        stanza = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if stanza["kind"] != "message" or not stanza.get("body"):
            self.send_response(204)  # nothing to say (an IQ gets an empty result)
            return self.end_headers()
        answer = json.dumps({"body": "echo: " + stanza["body"]}).encode()
        self.send_response(200)  # the answer goes back to the sender, from the bot's address
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)


ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1]) if sys.argv[1:] else 8081), EchoBot).serve_forever()
