# Python 3 port of Example 3.6 ("A simple server program to send responses")
# of the seed (/work/shared/seeds/qpid-proton-python-client.txt); changes:
# print statement -> print() function, this header comment, and an
# -a/--address option (like the seed's other examples) replacing the
# hard-coded "0.0.0.0:5672" and "examples" so tests can point it at a port;
# its default "0.0.0.0:5672/examples" keeps the seed's behaviour. The Server
# handler is unchanged.
import optparse
from proton import Message, Url
from proton.handlers import MessagingHandler
from proton.reactor import Container

class Server(MessagingHandler):
    def __init__(self, url, address):
        super(Server, self).__init__()
        self.url = url
        self.address = address
        self.senders = {}

    def on_start(self, event):
        print("Listening on", self.url)
        self.container = event.container
        self.conn = event.container.connect(self.url)
        self.receiver = event.container.create_receiver(self.conn, self.address)
        self.relay = None

    def on_connection_opened(self, event):
        if event.connection.remote_offered_capabilities and 'ANONYMOUS-RELAY' in event.connection.remote_offered_capabilities:
            self.relay = self.container.create_sender(self.conn, None)

    def on_message(self, event):
        print("Received", event.message)
        sender = self.relay or self.senders.get(event.message.reply_to)

        if not sender:
            sender = self.container.create_sender(self.conn, event.message.reply_to)
            self.senders[event.message.reply_to] = sender
        sender.send(Message(address=event.message.reply_to, body=event.message.body.upper(),
                            correlation_id=event.message.correlation_id))

parser = optparse.OptionParser(usage="usage: %prog [options]")
parser.add_option("-a", "--address", default="0.0.0.0:5672/examples",
                  help="address from which requests are received (default %default)")
opts, args = parser.parse_args()
url = Url(opts.address)

try:
    Container(Server("%s:%s" % (url.host, url.port), url.path)).run()
except KeyboardInterrupt: pass
