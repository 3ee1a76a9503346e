# The receiving side of the seed's SSL example ("Similarly, you can modify the receiver program
# to receive messages over a secured connection"): Example 3.4 ("Receiving reliable messages")
# with the SSL settings of Example 3.5, in Python 3. Options as in ssl_send.py.
import optparse
from proton import SSLDomain
from proton.handlers import MessagingHandler
from proton.reactor import Container

class Recv(MessagingHandler):
    def __init__(self, url, count):
        super(Recv, self).__init__()
        self.url = url
        self.expected = count
        self.received = 0

    def on_start(self, event):
        event.container.ssl.client.set_trusted_ca_db(opts.ca)
        event.container.ssl.client.set_peer_authentication(getattr(SSLDomain, opts.verify))
        if opts.cert:
            event.container.ssl.client.set_credentials(opts.cert, opts.key, opts.password)
        event.container.create_receiver(self.url)

    def on_message(self, event):
        if event.message.id and event.message.id < self.received:
            # ignore duplicate message
            return
        if self.expected == 0 or self.received < self.expected:
            print(event.message.body)
            self.received += 1
            if self.received == self.expected:
                event.receiver.close()
                event.connection.close()

parser = optparse.OptionParser(usage="usage: %prog [options]")
parser.add_option("-a", "--address", default="localhost:5672/examples",
                  help="address from which messages are received (default %default)")
parser.add_option("-m", "--messages", type="int", default=100,
                  help="number of messages to receive; 0 receives indefinitely (default %default)")
parser.add_option("--ca", help="the CA's certificate (PEM)")
parser.add_option("--cert", help="the client's certificate (PEM)")
parser.add_option("--key", help="the client's private key (PEM)")
parser.add_option("--password", default="client-password", help="the client key's password")
parser.add_option("--verify", default="VERIFY_PEER_NAME", help="VERIFY_PEER or VERIFY_PEER_NAME")
opts, args = parser.parse_args()

try:
    Container(Recv(opts.address, opts.messages)).run()
except KeyboardInterrupt: pass
