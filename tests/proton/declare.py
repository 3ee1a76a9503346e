# Queues declared by the client through node properties (the source's properties, which proton
# and Qpid's clients send for a node they want created), with RabbitMQ's queue arguments:
# a length limit, single active consumer, and a property whose value is not a setting's.
# Prints one line per check; the test compares them.
import optparse
from proton import Message, symbol
from proton.reactor import ReceiverOption
from proton.utils import BlockingConnection, LinkDetached, SendException

class Declare(ReceiverOption):
    def __init__(self, properties):
        self.properties = properties

    def apply(self, receiver):
        receiver.source.properties.put_dict(self.properties)

def refusal(url, address, options=None):
    conn = BlockingConnection(url)
    try:
        conn.create_receiver(address, options=options)
        return "accepted"
    except LinkDetached as e:
        condition = e.link.remote_condition
        return "%s (%s)" % (condition.name, condition.description) if condition else "detached"
    finally:
        try:
            conn.close()
        except Exception:
            pass

def received(receiver):
    try:
        m = receiver.receive(timeout=0.5)
    except Exception:
        return "nothing"
    receiver.accept()
    return m.body

parser = optparse.OptionParser()
parser.add_option("-a", "--address", default="localhost:5672")
opts, args = parser.parse_args()
url = opts.address
conn = BlockingConnection(url)

# x-max-length (reject-publish by default): the sixth message is refused.
capped = conn.create_receiver("capped", name="capped", credit=0,
                              options=Declare({symbol("x-max-length"): 5}))
sender = conn.create_sender("capped")
outcomes = []
for n in range(6):
    try:
        sender.send(Message(body=n))
        outcomes.append("accepted")
    except SendException as e:
        outcomes.append("rejected")
print("x-max-length 5: " + " ".join(outcomes))

# x-single-active-consumer: the second consumer waits until the first goes.
sac = Declare({symbol("x-single-active-consumer"): True})
first = conn.create_receiver("sac", name="first", options=sac)
second = conn.create_receiver("sac", name="second", options=sac)
to_sac = conn.create_sender("sac")
to_sac.send(Message(body="one"))
print("single active consumer: first %s, second %s" % (received(first), received(second)))
first.close()
to_sac.send(Message(body="two"))
print("after the first closes: second %s" % received(second))

# Values that are no setting's: refused on that link, with the key named.
print("exclusive = 'sometimes': " + refusal(url, "other", Declare({symbol("exclusive"): "sometimes"})))
conn.close()
