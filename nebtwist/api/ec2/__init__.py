"""The EC2 Query API front (a package: :mod:`.resource` the HTTP resource,
:mod:`.params` the request plumbing, :mod:`.base` states, ids and tags,
:mod:`.queries` and :mod:`.actions` the actions, one module a resource kind).

A ``twisted.web`` resource answering GET and POST (form-encoded or
``multipart/form-data`` body) on ``/``, dispatched on the ``Action``
parameter, as OpenNebula 3.4's econe-server (``src/cloud/ec2/lib/
econe-server.rb``, ``EC2QueryServer.rb``; reference section 7.1) did, but
calling the core's requests layer (:class:`nebtwist.core.requests.Requests`)
instead of the XML-RPC API: it translates, the core decides ("Fronts
translate; the core decides", DESIGN.md).

* Authentication: :func:`nebtwist.api.awsauth.verify_request` (SigV4, SigV2);
  the access key is the user name, the secret the stored SHA1 hex password.
* Responses: ``<{Action}Response xmlns="http://ec2.amazonaws.com/doc/<Version>/">``
  with a ``requestId``; ``Version`` is the request's (default
  :data:`DEFAULT_VERSION`; a missing or malformed one is fine).
* Errors: ``<Response><Errors><Error><Code/><Message/></Error></Errors>
  <RequestID/></Response>`` with the code's HTTP status; never a traceback.
* Ids: instances ``i-<vmid>``, images ``ami-%08d``, reservations ``r-...``,
  key pairs ``key-<17 hex>``. An id of AWS's own form (``i-1234abcd``,
  ``ami-0123456789abcdef0``) names nothing here: NotFound, not Malformed.

Actions (shapes per the AWS EC2 API reference, ``API_<Action>.html``):

* DescribeRegions, DescribeAvailabilityZones, DescribeInstanceTypes.
* Instances: RunInstances, DescribeInstances, DescribeInstanceStatus,
  TerminateInstances, StartInstances, StopInstances, RebootInstances.
* Images: DescribeImages, RegisterImage, DeregisterImage, CreateImage
  (OpenNebula's save-as) and econe's UploadImage
  (:meth:`EC2Resource.upload_image`).
* Filters (``Filter.N.Name``/``Filter.N.Value.M``): every filter must
  match, one of a filter's values is enough, as AWS; an unknown filter name
  is InvalidParameterValue.
* Key pairs: CreateKeyPair, ImportKeyPair, DescribeKeyPairs, DeleteKeyPair,
  kept in the user's template as ``EC2_KEYPAIR = [ NAME, ID, FINGERPRINT,
  PUBLIC_KEY, TYPE, CREATED ]`` vectors.
* Elastic IPs (econe.conf ``ELASTIC_IP_NETWORK``; 3.4 ``:elasticips_vnet_id``):
  AllocateAddress, ReleaseAddress, AssociateAddress, DisassociateAddress,
  DescribeAddresses; held leases of that network, recorded in its template as
  ``EC2_ADDRESSES = [ IP, UID, INSTANCE_ID ]`` vectors.
* Tags: CreateTags, DeleteTags, DescribeTags on instances and images, kept in
  the object's template as ``EC2_TAG = [ KEY, VALUE ]`` vectors.

Key pairs, elastic addresses and tags are core operations
(:mod:`nebtwist.core.requests_keypairs`, :mod:`~nebtwist.core.requests_addresses`,
:mod:`~nebtwist.core.requests_tags`) any front may use; what they add to core
objects goes through the pools' normal write-through path, so it survives a
restart, and a failed write puts memory back as it was.
"""

from nebtwist.api.ec2.actions.addresses import SCRIPT_TIMEOUT, AddressActions, run_script
from nebtwist.api.ec2.actions.images import ImageActions
from nebtwist.api.ec2.actions.instances import TERMINATED_VISIBLE, InstanceActions
from nebtwist.api.ec2.actions.keypairs import KeyPairActions
from nebtwist.api.ec2.actions.tags import TagActions
from nebtwist.api.ec2.base import (MAX_TAG_KEY, MAX_TAG_VALUE, MAX_TAGS, EC2Error, ami_id,
                                   ec2_state, instance_id)
from nebtwist.api.ec2.params import DEFAULT_MAX_UPLOAD, MAX_FORM_FIELD, check_characters
from nebtwist.api.ec2.queries import QueryActions
from nebtwist.api.ec2.resource import DEFAULT_VERSION, DRY_RUN_MESSAGE, EC2Resource

__all__ = [
    "AddressActions", "DEFAULT_MAX_UPLOAD", "DEFAULT_VERSION", "DRY_RUN_MESSAGE", "EC2Error",
    "EC2Resource", "ImageActions", "InstanceActions", "KeyPairActions", "MAX_FORM_FIELD",
    "MAX_TAG_KEY", "MAX_TAG_VALUE", "MAX_TAGS", "QueryActions", "SCRIPT_TIMEOUT",
    "TERMINATED_VISIBLE", "TagActions", "ami_id", "check_characters", "ec2_state",
    "instance_id", "run_script",
]
