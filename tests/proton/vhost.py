# Not a seed example: python-qpid-proton choosing a virtual host with connect's virtual_host
# (the hostname of its open), as RabbitMQ users do with "vhost:NAME". Sends BODY to the queue
# "greetings", or with "recv" prints each message there now, one per line, accepting it.
import sys
from proton import Message, Timeout
from proton.utils import BlockingConnection

url, vhost, command = sys.argv[1:4]
connection = BlockingConnection(url, virtual_host=vhost or None)
if command == "send":
    sender = connection.create_sender("greetings")
    sender.send(Message(body=sys.argv[4]))
else:
    receiver = connection.create_receiver("greetings")
    try:
        while True:
            message = receiver.receive(timeout=1)
            print(message.body)
            receiver.accept()
    except Timeout:
        pass
connection.close()
