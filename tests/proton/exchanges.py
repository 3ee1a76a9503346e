# Seed rabbitmq-basics.txt (exchanges, bindings, exclusive temporary queues, prefetch 1 fair
# dispatch, a conflicting redeclare) as an AMQP 1.0 client writes it with python-qpid-proton:
# exchanges are addressed by name, a receiver's legacy binding filter is its binding key, a
# dynamic receiver gets an exclusive temporary queue, and address parameters declare.
# Prints one line per check; the test compares them.
import optparse
from proton import Message, symbol, Described
from proton.reactor import Filter, ReceiverOption
from proton.utils import BlockingConnection, LinkDetached

def binding(kind, key):
    return Filter({symbol("binding"): Described(symbol("apache.org:legacy-amqp-%s-binding:string" % kind), key)})

class Declare(ReceiverOption):
    """Node properties, as Qpid's clients declare a queue: exclusive, auto-delete, arguments."""
    def __init__(self, properties):
        self.properties = properties

    def apply(self, receiver):
        receiver.source.properties.put_dict(self.properties)

def drain(receiver):
    got = []
    while True:
        try:
            m = receiver.receive(timeout=0.5)
        except Exception:
            return got
        receiver.accept()
        got.append(m.body)

def refusal(url, address, options=None):
    conn = BlockingConnection(url)
    try:
        conn.create_receiver(address, options=options)
        return "accepted"
    except LinkDetached as e:
        condition = e.link.remote_condition
        return condition.name if condition else "detached"
    finally:
        try:
            conn.close()
        except Exception:
            pass

parser = optparse.OptionParser()
parser.add_option("-a", "--address", default="localhost:5672")
opts, args = parser.parse_args()
url = opts.address

conn = BlockingConnection(url)

# Topic exchange: * is one word, # zero or more.
logs = conn.create_receiver("amq.topic", name="logs", options=binding("topic", "log.*"))
errors = conn.create_receiver("amq.topic", name="errors", options=binding("topic", "#.error"))
everything = conn.create_receiver("amq.topic", name="everything")
sender = conn.create_sender("amq.topic")
for subject in ["log.info", "log.error", "mq.log.error", "kern.warn"]:
    sender.send(Message(subject=subject, body=subject))
print("topic log.*: " + " ".join(drain(logs)))
print("topic #.error: " + " ".join(drain(errors)))
print("topic (no filter): " + " ".join(drain(everything)))

# Direct exchange: the binding key must equal the routing key.
red = conn.create_receiver("amq.direct", name="red", options=binding("direct", "red"))
green = conn.create_receiver("amq.direct", name="green", options=binding("direct", "green"))
direct = conn.create_sender("amq.direct")
for subject in ["red", "green", "red"]:
    direct.send(Message(subject=subject, body=subject))
print("direct red: " + " ".join(drain(red)))
print("direct green: " + " ".join(drain(green)))

# Fanout exchange: every bound queue gets every message.
one = conn.create_receiver("amq.fanout", name="one")
two = conn.create_receiver("amq.fanout", name="two")
fanout = conn.create_sender("amq.fanout")
fanout.send(Message(body="hello all"))
print("fanout one: " + " ".join(drain(one)))
print("fanout two: " + " ".join(drain(two)))

# A durable queue, prefetch 1: two workers share the messages fairly.
work = conn.create_sender("anheng")
for n in range(1, 5):
    work.send(Message(body="task %d" % n, durable=True))
w1 = conn.create_receiver("anheng", name="w1", credit=1)
w2 = conn.create_receiver("anheng", name="w2", credit=1)
got1, got2 = [], []
for _ in range(2):
    got1.append(w1.receive(timeout=2).body)
    w1.accept()
    got2.append(w2.receive(timeout=2).body)
    w2.accept()
print("fair: %d + %d of 4, none twice: %s" % (len(got1), len(got2), len(set(got1 + got2)) == 4))

# An exclusive temporary queue: a dynamic receiver; others may send to it, not consume.
temporary = conn.create_receiver(None, dynamic=True)
address = temporary.remote_source.address
print("temporary queue: " + ("generated" if address else "none"))
other = BlockingConnection(url)
other.create_sender(address).send(Message(body="reply"))
other.close()
print("temporary receives: " + " ".join(drain(temporary)))
print("temporary consumed by another connection: " + refusal(url, address))

# A redeclare that conflicts with the queue as it exists: RabbitMQ's 406.
print("redeclare anheng?durable=false: " + refusal(url, "anheng?durable=false"))
print("redeclare anheng as a topic: " + refusal(url, "topic://anheng"))
print("redeclare anheng with node property durable=false: "
      + refusal(url, "anheng", Declare({symbol("durable"): False})))

# Exclusive and auto-delete declared by the client, as queue_declare(exclusive=True) would.
declared = conn.create_receiver("solo", name="solo",
                                options=Declare({symbol("exclusive"): True, symbol("auto-delete"): True}))
print("exclusive, second consumer: " + refusal(url, "solo"))
declared.close()
print("auto-delete, after its consumer: " + refusal(url, "queue://solo?auto-delete=false"))
conn.close()
