# Python 3 port of Example 3.10 ("Filtering messages using a selector") of the
# seed (/work/shared/seeds/qpid-proton-python-client.txt); changes: print
# statement -> print() function, this header comment, and an -a/--address
# option (like the seed's other examples) replacing the hard-coded
# "localhost:5672" and "examples" so tests can point it at a port: Recv now
# takes the connection URL and the source address instead of hard-coding
# them; the default "localhost:5672/examples" keeps the seed's behaviour.
import optparse
from proton import Url
from proton.reactor import Container, Selector
from proton.handlers import MessagingHandler

class Recv(MessagingHandler):
    def __init__(self, url, address):
        super(Recv, self).__init__()
        self.url = url
        self.address = address

    def on_start(self, event):
        conn = event.container.connect(self.url)
        event.container.create_receiver(conn, self.address, options=Selector(u"colour = 'green'"))

    def on_message(self, event):
        print(event.message.body)

parser = optparse.OptionParser(usage="usage: %prog [options]")
parser.add_option("-a", "--address", default="localhost:5672/examples",
                  help="address from which messages are received (default %default)")
opts, args = parser.parse_args()
url = Url(opts.address)

try:
    Container(Recv("%s:%s" % (url.host, url.port), url.path)).run()
except KeyboardInterrupt: pass
