from setuptools import find_packages, setup

setup(
    name='keypose_ext',
    version='0.1.0',
    description='MMPose 1.x plugins: depth keypoint regression, category-agnostic '
    'pose estimation on MP-100 and Sapiens fine-tuning',
    packages=find_packages(include=['keypose_ext', 'keypose_ext.*']),
    include_package_data=True,
    python_requires='>=3.9',
    # The OpenMMLab stack is installed by tools/setup_env.sh: mmcv needs a source build
    # with ops and mmpose must go in without its chumpy requirement.
    install_requires=[
        'numpy', 'opencv-python', 'protobuf', 'pycocotools', 'tqdm', 'mmengine>=0.10.7',
        'mmpose>=1.3.2'
    ],
)
