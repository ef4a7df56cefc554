"""Image-quality metrics: PSNR, SSIM, scale-invariant PSNR, no-reference scores."""
