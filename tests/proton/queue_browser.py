# Python 3 port of Proton's queue_browser.py example (python/examples in qpid-proton):
# a receiver with the Copy option (distribution-mode = copy) prints messages of the queue
# without taking any. Changes: the address is an option, as in the seed's other examples.
# Note: `drained` is a method in proton's Python API, so the bare attribute below is always
# true and the example stops as soon as it has printed what has arrived (its first prefetch
# batch) whatever the broker does; it is kept as written.
import optparse
from proton.reactor import Container, Copy
from proton.handlers import MessagingHandler

class Recv(MessagingHandler):
    def __init__(self, url):
        super(Recv, self).__init__()
        self.url = url

    def on_start(self, event):
        event.container.create_receiver(self.url, options=Copy())

    def on_message(self, event):
        print(event.message.body)
        if event.receiver.queued == 0 and event.receiver.drained:
            event.connection.close()

parser = optparse.OptionParser(usage="usage: %prog [options]")
parser.add_option("-a", "--address", default="localhost:5672/examples",
                  help="address of the queue to browse (default %default)")
opts, args = parser.parse_args()

try:
    Container(Recv(opts.address)).run()
except KeyboardInterrupt: pass
