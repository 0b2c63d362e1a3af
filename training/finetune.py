"""Fine-tuning a pretrained encoder with few labels: what the training loop asks of this module.

* ``resolve_architecture``: with encoder weights and architecture ``auto``, the U-Net on the ResNet the
  weights file holds; with scene pretraining, ``unet_resnet18``.
* ``FineTune(model, network, config, spec, events)``: loads the encoder weights (encoder_weights.py; their
  file name, sha256 and what loaded go into ``network["encoder_weights"]``, hence the checkpoints and the model
  card) or pretrains the encoder on the scene (scene_pretrain.py; what it did goes there too), gives the
  optimiser its parameter groups, and before each epoch sets what trains:

  - the encoder is frozen (no gradients, batch norm in eval mode) for the first ``freeze_encoder_epochs``
    epochs, so the random decoder does not wreck the pretrained features while it finds its feet;
  - then it trains at ``encoder_lr_factor`` times the decoder's learning rate (discriminative learning rates:
    the loop multiplies each group's rate by its ``lr_scale``);
  - with batches under ``SMALL_BATCH`` chips the encoder's batch norm stays in eval mode throughout (the
    pretrained running statistics, not noisy ones from a few chips; its scale and shift still learn).

Input normalisation: the chips are standardised per band (dataset mean/std, also in the model card), which
gives each band zero mean and unit variance, what ImageNet's per-channel normalisation gives natural images;
no other normalisation is applied, so the ONNX contract (standardised bands in) is unchanged.
Networks without an encoder (and encoders without pretrained weights) train as before: one group, scale 1.
"""
from torch import nn

from landcover_plugin.core.errors import BadInputError

from .encoder_weights import load_encoder_weights, read_state, resnet_of, strip_prefix
from .resnet import ResNetEncoder
from .scene_pretrain import pretrain_encoder

SMALL_BATCH = 8


def resolve_architecture(architecture: str, config, events) -> str:
    """``auto`` with encoder weights: ``unet_<the weights' ResNet>``; with scene pretraining: ``unet_resnet18``;
    any other name as it is (one without a ResNet encoder is refused when either is asked for)."""
    if config.scene_pretrain_minutes and not config.encoder_weights:
        if architecture == "auto":
            events.info("Architecture 'auto' with scene pretraining: unet_resnet18.")
            return "unet_resnet18"
        if "_resnet" not in architecture:
            raise BadInputError(f"Scene pretraining needs an architecture with a ResNet encoder; '{architecture}' "
                                f"has none. Choose unet_resnet18/34/50 or deeplabv3plus_resnet18/34/50 (or "
                                f"Automatic), or set scene pretraining to 0 minutes.")
        return architecture
    if not config.encoder_weights:
        return architecture
    if architecture == "auto":
        own = ResNetEncoder("resnet18", 3).state_dict()
        _, tensors = strip_prefix(read_state(config.encoder_weights), own)
        depth = resnet_of(tensors)
        if depth is None:
            raise BadInputError(f"'{config.encoder_weights}' does not hold a ResNet-18/34/50 in torchvision's "
                                f"layout. Give a torchvision, timm, SSL4EO-S12 or SatlasPretrain ResNet state dict.")
        events.info(f"Architecture 'auto' with encoder weights: unet_{depth}, the U-Net on the weights' {depth}.")
        return f"unet_{depth}"
    if "_resnet" not in architecture:
        raise BadInputError(f"Pretrained encoder weights need an architecture with a ResNet encoder; "
                            f"'{architecture}' has none. Choose unet_resnet18/34/50 or deeplabv3plus_resnet18/34/50 "
                            f"(or Automatic), or leave the encoder weights empty.")
    return architecture


class FineTune:
    def __init__(self, model: nn.Module, network: dict, config, spec, events, load: bool = True, device="cpu"):
        self.model, self.config, self.events = model, config, events
        self.encoder = getattr(model, "encoder", None)
        self.pretrained = False
        if load and config.encoder_weights and self.encoder is not None:
            network["encoder_weights"] = load_encoder_weights(model, config.encoder_weights, spec.band_names,
                                                              events)
        elif load and config.scene_pretrain_minutes and self.encoder is not None:
            state, network["encoder_weights"] = pretrain_encoder(
                network["architecture"], spec, network["base_width"], config.scene_pretrain_minutes, device, events,
                seed=config.seed)
            self.encoder.load_state_dict(state)
        self.pretrained = self.encoder is not None and bool(network.get("encoder_weights"))
        self.freeze = config.freeze_encoder_epochs if self.pretrained else 0
        self.small_batch = self.pretrained and config.batch_size < SMALL_BATCH
        self._said = set()
        if self.pretrained:
            events.info("Fine-tuning the pretrained encoder: "
                        + (f"frozen for the first {self.freeze} epoch(s), then " if self.freeze else "")
                        + f"at {config.encoder_lr_factor:g} x the decoder's learning rate"
                        + (f"; its batch norm keeps the pretrained statistics (batches of {config.batch_size} < "
                           f"{SMALL_BATCH} chips)" if self.small_batch else "")
                        + ". The chips are standardised per band, as the pretrained weights expect of their input.")

    def param_groups(self) -> list:
        if not self.pretrained:
            return [{"params": list(self.model.parameters())}]
        return [{"params": self.model.encoder_parameters(), "lr_scale": self.config.encoder_lr_factor},
                {"params": self.model.decoder_parameters(), "lr_scale": 1.0}]

    def before_epoch(self, epoch: int) -> None:
        """Call after ``model.train()``: freeze or unfreeze the encoder, keep its batch norm in eval mode."""
        if not self.pretrained:
            return
        frozen = epoch <= self.freeze
        for parameter in self.encoder.parameters():
            parameter.requires_grad_(not frozen)
        if frozen or self.small_batch:
            for module in self.encoder.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()
        if frozen and "frozen" not in self._said:
            self._said.add("frozen")
            self.events.info(f"Epoch {epoch}: encoder frozen, training the decoder only.")
        if not frozen and self.freeze and "thawed" not in self._said:
            self._said.add("thawed")
            self.events.info(f"Epoch {epoch}: encoder unfrozen, at {self.config.encoder_lr_factor:g} x the "
                             f"learning rate.")
