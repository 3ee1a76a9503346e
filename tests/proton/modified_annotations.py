# Not a seed example: sluice's own check (issue 13) that a `modified` outcome's
# message-annotations are merged into the message delivered again (AMQP 1.0 §3.4.5),
# with python-qpid-proton as the consumer. Sends one message annotated x-opt-a = "old",
# receives it, settles it modified (delivery-failed, annotations x-opt-a = "new",
# x-opt-b = 42), receives it again and prints its annotations and delivery-count.
import optparse
from proton import Delivery, Message, symbol
from proton.handlers import MessagingHandler
from proton.reactor import Container


class Modify(MessagingHandler):
    def __init__(self, url):
        super(Modify, self).__init__(auto_accept=False)
        self.url = url
        self.seen = 0

    def on_start(self, event):
        conn = event.container.connect(self.url.split("/")[0])
        address = self.url.split("/", 1)[1]
        self.sender = event.container.create_sender(conn, address)
        event.container.create_receiver(conn, address)

    def on_sendable(self, event):
        if self.sender is not None:
            message = Message(body="modify-me",
                              annotations={symbol("x-opt-a"): "old"})
            event.sender.send(message)
            event.sender.close()
            self.sender = None

    def on_message(self, event):
        self.seen += 1
        if self.seen == 1:
            event.delivery.local.failed = True
            event.delivery.local.annotations = {symbol("x-opt-a"): "new",
                                                symbol("x-opt-b"): 42}
            event.delivery.update(Delivery.MODIFIED)
            event.delivery.settle()
            return
        annotations = event.message.annotations or {}
        for key in sorted(annotations):
            print("%s=%r" % (key, annotations[key]))
        print("delivery-count=%d" % event.message.delivery_count)
        self.accept(event.delivery)
        event.connection.close()


parser = optparse.OptionParser(usage="usage: %prog [options]")
parser.add_option("-a", "--address", default="localhost:5672/examples",
                  help="address to send to and receive from (default %default)")
opts, args = parser.parse_args()
Container(Modify(opts.address)).run()
