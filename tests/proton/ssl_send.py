# Python 3 port of Example 3.5 ("Sending reliable messages over a secured connection") of the
# seed (/work/shared/seeds/qpid-proton-python-client.txt). Changes: print statement -> print()
# function; the seed's missing `SSLDomain` import added; the placeholder paths
# ("/path/to/ca-certificate.pem", ...) and the client password taken from options (--ca,
# --cert, --key, --password: scripts/make-test-certs.sh makes them); --verify chooses between
# the seed's VERIFY_PEER and the VERIFY_PEER_NAME its note suggests. Otherwise unchanged.
import optparse
from proton import Message, SSLDomain
from proton.handlers import MessagingHandler
from proton.reactor import Container

class Send(MessagingHandler):
    def __init__(self, url, messages):
        super(Send, self).__init__()
        self.url = url
        self.sent = 0
        self.confirmed = 0
        self.total = messages

    def on_start(self, event):
        event.container.ssl.client.set_trusted_ca_db(opts.ca)
        event.container.ssl.client.set_peer_authentication(getattr(SSLDomain, opts.verify))
        if opts.cert:
            event.container.ssl.client.set_credentials(opts.cert, opts.key, opts.password)
        event.container.create_sender(self.url)

    def on_sendable(self, event):
        while event.sender.credit and self.sent < self.total:
            msg = Message(id=(self.sent+1), body={'sequence':(self.sent+1)})
            event.sender.send(msg)
            self.sent += 1

    def on_accepted(self, event):
        self.confirmed += 1
        if self.confirmed == self.total:
            print("all messages confirmed")
            event.connection.close()

    def on_disconnected(self, event):
        self.sent = self.confirmed

parser = optparse.OptionParser(usage="usage: %prog [options]",
                               description="Send messages to the supplied address.")
parser.add_option("-a", "--address", default="localhost:5672/examples",
                  help="address to which messages are sent (default %default)")
parser.add_option("-m", "--messages", type="int", default=100,
                  help="number of messages to send (default %default)")
parser.add_option("--ca", help="the CA's certificate (PEM)")
parser.add_option("--cert", help="the client's certificate (PEM)")
parser.add_option("--key", help="the client's private key (PEM)")
parser.add_option("--password", default="client-password", help="the client key's password")
parser.add_option("--verify", default="VERIFY_PEER_NAME", help="VERIFY_PEER or VERIFY_PEER_NAME")
opts, args = parser.parse_args()

try:
    Container(Send(opts.address, opts.messages)).run()
except KeyboardInterrupt: pass
