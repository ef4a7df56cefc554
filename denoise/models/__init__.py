"""Networks: the U-Net and its measured receptive field."""
