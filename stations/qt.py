"""The one place the station app imports Qt from, so a later move to PyQt6/PySide is one file."""
from __future__ import annotations

from PyQt5 import QtCore, QtGui, QtWidgets  # noqa: F401  (re-exported on purpose)
from PyQt5.QtCore import (QEvent, QMetaObject, QObject, QRunnable, QSize, Qt, QThread,  # noqa: F401
                          QTimer, pyqtSignal, pyqtSlot)
from PyQt5.QtGui import (QColor, QFont, QFontDatabase, QFontInfo, QFontMetrics,  # noqa: F401
                         QKeyEvent, QPalette)
from PyQt5.QtWidgets import (QApplication, QCheckBox, QComboBox, QDialog,  # noqa: F401
                             QDialogButtonBox, QFileDialog, QFormLayout, QFrame, QGridLayout,
                             QGroupBox, QHBoxLayout, QLabel, QLineEdit, QListWidget,
                             QListWidgetItem, QMainWindow, QMessageBox, QProgressBar,
                             QPushButton, QScrollArea, QSizePolicy, QSpinBox, QStatusBar,
                             QVBoxLayout, QWidget)

Signal = pyqtSignal
Slot = pyqtSlot
