//! Section 05, image generation: GANs, VAEs, diffusion, CLIP and DALL-E.
//!
//! | module | milestone idea |
//! | --- | --- |
//! | [`clip`] | Radford et al. 2021: an image and a text encoder trained into one space by the symmetric contrastive loss, zero-shot classification from prompts, linear probes |
//! | [`metrics`] | the yardstick every notebook of the section uses: Fréchet distance of classifier features, inception score, class histogram, precision and recall |
//! | [`dalle`] | Ramesh et al. 2021 and 2022: a discrete VAE trained through the Gumbel-softmax relaxation, a transformer over caption and image tokens (DALL-E), and the diffusion prior over CLIP image embeddings (DALL-E 2) |
//! | [`diffusion`] | Sohl-Dickstein et al. 2015 to Dhariwal & Nichol 2021: noise schedules, the denoising objective, ancestral and respaced sampling, a small U-Net, classifier guidance, weight averaging |
//! | [`gan`] | Goodfellow et al. 2014: a generator and a discriminator in a two-player game, the minimax and the non-saturating generator loss |
//! | [`vae`] | Kingma & Welling 2013: the variational autoencoder, its bound, the reparameterization trick, importance-weighted likelihood |
//! | [`vq_vae`] | van den Oord et al. 2017 and Razavi et al. 2019: vector quantization, straight-through gradients, a prior over codes, two levels |
//! | [`yardstick`] | the Fashion-MNIST classifier those measures read images through, stored trained in `assets/models/` |

pub mod clip;
pub mod dalle;
pub mod diffusion;
pub mod gan;
pub mod metrics;
pub mod vae;
pub mod vq_vae;
pub mod yardstick;
