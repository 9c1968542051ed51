## m1.small: the VM template of an EC2 instance of type m1.small.
## Variables (see nebtwist.core.vmtypes): image_id, image_path, instance_type,
## user_data, key_name, public_key, user, user_id, network, vm_name,
## device_prefix, and the helper q() quoting a value for the template syntax.
NAME   = ${q(vm_name)}
CPU    = 0.2
MEMORY = 256

DISK = [ IMAGE_ID = ${image_id} ]
% if network is not None:

NIC = [ NETWORK = ${q(network)} ]
% endif

CONTEXT = [
% if public_key is not None:
  SSH_PUBLIC_KEY = ${q(public_key)},
% endif
% if user_data is not None:
  EC2_USER_DATA  = ${q(user_data)},
% endif
  EC2_USER       = ${q(user)},
  TARGET         = ${q(device_prefix + "b")} ]

IMAGE_ID      = ${image_id}
INSTANCE_TYPE = ${q(instance_type)}
