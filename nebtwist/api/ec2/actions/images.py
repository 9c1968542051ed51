"""EC2 image actions (AWS EC2 API reference, API_DescribeImages,
API_RegisterImage, API_DeregisterImage; econe 3.4's UploadImage):
:class:`ImageActions`, a mixin of :class:`nebtwist.api.ec2.resource.EC2Resource`,
calling the requests layer.
"""

import re
import uuid

from twisted.internet import defer
from twisted.logger import Logger

from nebtwist.api.ec2.base import _AMI_ID, _AWS_AMI_ID, _IMAGE_STATES, EC2Error, _printable, ami_id
from nebtwist.api.ec2.params import _unlink
from nebtwist.api.ec2.queries import _public
from nebtwist.errors import ActionError, AuthorizationError, NoSuchObject
from nebtwist.template import Template

log = Logger()


class ImageActions:
    """Images: DescribeImages, RegisterImage, UploadImage, DeregisterImage."""

    def _images(self, user):
        return self.requests.image_list(user)

    def _image(self, user, ami):
        m = _AMI_ID.match(ami or "")
        if not m and not _AWS_AMI_ID.match(ami or ""):
            raise EC2Error("InvalidAMIID.Malformed", f"Invalid id: \"{ami}\"")
        image = None
        if m:
            try:
                image = self.requests.image_get(user, int(m.group(1)))
            except (NoSuchObject, AuthorizationError):
                pass
        if image is None:
            raise EC2Error("InvalidAMIID.NotFound", f"The image id '[{ami}]' does not exist")
        return image

    async def describe_images(self, user, params, out):
        """DescribeImages: the images the user may use (``ImageId.N``), with
        their description and tags, narrowed as the AWS API reference
        (API_DescribeImages) says:

        * ``Owner.N``: ``self`` (the user's own), an owner's name (this
          front's account ids); ``amazon``, ``aws-marketplace`` and
          ``aws-backup-vault`` own nothing here. An image of any one of them.
        * ``ExecutableBy.N``: ``self`` (images the user may launch: all it
          sees), ``all`` (public ones: OTHER_U), or a user name (images that
          user may use). An image any one of them may launch.
        * ``Filter.N`` (:data:`_IMAGE_FILTERS` and ``tag:KEY``), every one
          matching, ``*``/``?`` wildcards.

        ``isPublic`` is true for images anyone may use (OTHER_U).

        :raises EC2Error: InvalidAMIID.NotFound/Malformed for ``ImageId.N``;
            InvalidParameterValue for an unknown filter.
        """
        wanted = params.indexed("ImageId")
        images = ([self._image(user, ami) for ami in wanted] if wanted
                  else self._images(user))
        images = self._narrow_images(user, images, params)
        images_set = out.sub(out.root, "imagesSet")
        for image in images:
            item = out.sub(images_set, "item")
            out.sub(item, "imageId", ami_id(image.oid))
            out.sub(item, "imageLocation", image.source or image.path or image.name)
            out.sub(item, "imageState", _IMAGE_STATES.get(image.state_name, "pending"))
            out.sub(item, "imageOwnerId", image.uname)
            out.sub(item, "isPublic", _public(image))
            out.sub(item, "architecture", "i386")
            out.sub(item, "imageType", "machine")
            out.sub(item, "name", image.name)
            description = image.template.get_str("DESCRIPTION")
            if description:
                out.sub(item, "description", description)
            out.sub(item, "rootDeviceType", "instance-store")
            out.tag_set(item, image)

    async def _register_file(self, user, name, path, description=None, staged=None):
        """Register the file ``path`` as an OS image named ``name`` owned by
        ``user``, through the core (the image manager copies it into the
        image datastore, LOCKED until READY); returns the image id.

        A user outside oneadmin's group may register a local path only under
        oned.conf ``IMAGE_SAFE_DIRS``; the files here are the front's own (an
        upload it staged, an object of its repository), so their folders are
        passed as the image manager's ``trusted_dirs``.

        :param staged: an :class:`_Upload` whose file is deleted once the
            copy ends.
        :raises EC2Error: a bad name (InvalidParameterValue), one the user
            already has (InvalidAMIName.Duplicate), or a user who may not
            create images (UnauthorizedOperation).
        """
        if not _printable(name, 128):
            raise EC2Error("InvalidParameterValue",
                           f"Invalid value '{name}' for Name: 1 to 128 characters, no "
                           f"control characters.")
        if not self.requests.may_create(user, "IMAGE"):
            raise EC2Error("UnauthorizedOperation",
                           f"User [{user.oid}] : Not authorized to perform CREATE IMAGE.", 403)
        taken = self.requests.image_find(user, name)
        if taken is not None:
            raise EC2Error("InvalidAMIName.Duplicate",
                           f"AMI name {name} is already in use by AMI {ami_id(taken.oid)}")
        attrs = [("NAME", name), ("PATH", path), ("TYPE", "OS")]
        if description:
            attrs.append(("DESCRIPTION", description))
        trusted = [d for d in (self._upload_dir(), getattr(self.repository, "root", None)) if d]
        oid = await self.requests.image_allocate(user, Template(attrs).to_text(),
                                                 trusted_dirs=trusted)
        if staged is not None:
            staged.kept = True
            ended = self.requests.image_copy_ended(user, oid)
            if ended is None:
                _unlink(staged.path)
            else:
                ended.addCallback(lambda _: _unlink(staged.path))
        log.info("EC2: image {oid} ({name}) registered for {user} from {path}", oid=oid,
                 name=name, user=user.name, path=path)
        return oid

    async def register_image(self, user, params, out):
        """RegisterImage.

        * ``ImageLocation = "bucket/key"`` (or ``s3://bucket/key``): that
          object of the S3-like repository becomes an OS image of the core
          pool (``oneimage list``), named ``Name`` (default: the key's last
          segment), with ``Description`` kept as DESCRIPTION. Repository
          errors: NoSuchBucket/NoSuchKey and others are InvalidParameterValue,
          AccessDenied is UnauthorizedOperation.
        * ``ImageLocation = "ami-00000042"`` (or ``42``): econe 3.4's form for
          an image uploaded with UploadImage: a DISABLED image is enabled;
          the id is answered.

        Response: ``<imageId>ami-%08d</imageId>``.
        """
        location = params.require("ImageLocation").strip()
        m = re.fullmatch(r"(?:ami-)?([0-9]{1,9})", location)
        if m:
            image = self._image(user, ami_id(m.group(1)))
            if image.state_name == "DISABLED":
                await self.requests.image_enable(user, image.oid, True)
            out.sub(out.root, "imageId", ami_id(image.oid))
            return
        if location.startswith("s3://"):
            location = location[len("s3://"):]
        bucket, _, key = location.partition("/")
        if not bucket or not key:
            raise EC2Error("InvalidParameterValue",
                           f"Invalid value '{location}' for ImageLocation: bucket/key of the "
                           f"image repository, or an image id (ami-00000000).")
        if self.repository is None:
            raise EC2Error("InvalidParameterValue",
                           "There is no image repository (S3) on this front: no repository.")
        try:
            path = await defer.maybeDeferred(self.repository.object_file, user, bucket, key)
        except Exception as e:  # noqa: BLE001 - S3Error subclasses carry .code
            code = getattr(e, "code", None)
            if code is None:
                raise
            message = getattr(e, "message", None) or str(e)
            if code == "AccessDenied":
                raise EC2Error("UnauthorizedOperation",
                               f"Not authorized to read {bucket}/{key}: {message}", 403) from None
            raise EC2Error("InvalidParameterValue",
                           f"Invalid value '{bucket}/{key}' for ImageLocation: {code}: "
                           f"{message}") from None
        name = params.get("Name") or key.rstrip("/").rsplit("/", 1)[-1] or f"ec2-{uuid.uuid4()}"
        oid = await self._register_file(user, name, path, params.get("Description"))
        out.sub(out.root, "imageId", ami_id(oid))

    async def upload_image(self, user, params, out):
        """UploadImage (econe-upload, 3.4): a ``multipart/form-data`` POST
        whose ``file`` field is the image. It is staged on disk while the
        body is parsed, registered as an OS image named ``ec2-<uuid>``
        (:meth:`_register_file`) and the staged file removed once copied.
        Answers a RegisterImageResponse with the ``imageId``.

        :raises EC2Error: MissingParameter without a ``file`` field.
        """
        if params.upload is None:
            raise EC2Error("MissingParameter",
                           "The request must contain the parameter file (a multipart/"
                           "form-data field holding the image).")
        oid = await self._register_file(user, f"ec2-{uuid.uuid4()}", params.upload.path,
                                        staged=params.upload)
        out.sub(out.root, "imageId", ami_id(oid))

    async def deregister_image(self, user, params, out):
        """DeregisterImage: delete the image (and its repository file)
        through the core; an image VMs use or still being copied is refused
        (``IncorrectState``) and nothing is lost; another user's image is
        UnauthorizedOperation, an unknown one InvalidAMIID.NotFound."""
        image = self._image(user, params.require("ImageId"))
        try:
            await self.requests.image_delete(user, image.oid)
        except ActionError as e:
            raise EC2Error("IncorrectState", str(e)) from None
        out.sub(out.root, "return", "true")

